package coordinator

import (
	"context"
	"fmt"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/medfed/medfed/crypto/pki"
)

// authorize checks that the caller's verified certificate binds role (any role if role is
// empty) and, if client is not empty, the ID client (pki.IdentityFromTLS). In insecure
// mode every caller passes.
func (n *Node) authorize(ctx context.Context, role pki.Role, client string) error {
	if n.cfg.Insecure {
		return nil
	}
	p, ok := peer.FromContext(ctx)
	if !ok {
		return fmt.Errorf("%w: no peer information", ErrIdentity)
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return fmt.Errorf("%w: connection is not TLS", ErrIdentity)
	}
	gotRole, id, err := pki.IdentityFromTLS(ti.State)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrIdentity, err)
	}
	if role != "" && gotRole != role {
		return fmt.Errorf("%w: caller is %s %q, this call needs the %s role", ErrIdentity, gotRole, id, role)
	}
	if client != "" && id != client {
		return fmt.Errorf("%w: certificate binds %s %q, request acts as %q", ErrIdentity, gotRole, id, client)
	}
	return nil
}
