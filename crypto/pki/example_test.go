package pki_test

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"time"

	"github.com/medfed/medfed/crypto/pki"
)

// The consortium makes a CA once and issues a certificate to a hospital,
// which binds the hospital's client ID.
func ExampleCA_Issue() {
	ca, err := pki.NewCA("Example consortium", 365*24*time.Hour, time.Now())
	if err != nil {
		panic(err)
	}
	certPEM, keyPEM, err := ca.Issue(pki.IssueRequest{Role: pki.RoleHospital, ID: "st-mary"})
	if err != nil {
		panic(err)
	}
	_ = keyPEM // saved with mode 0600 next to the certificate, see pki.SaveKeyPair

	block, _ := pem.Decode(certPEM)
	cert, _ := x509.ParseCertificate(block.Bytes)
	role, id, err := pki.Identity(cert)
	fmt.Println(role, id, err)
	fmt.Println(cert.URIs[0])

	_, _, err = ca.Issue(pki.IssueRequest{Role: pki.RoleHospital, ID: "st mary"})
	fmt.Println(err)
	// Output:
	// hospital st-mary <nil>
	// medfed://hospital/st-mary
	// pki: invalid id: "st mary" contains ' ', want only [A-Za-z0-9._-]
}
