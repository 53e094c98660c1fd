// Package seal protects MedFed's secrets at rest and in transit between
// hospitals, using filippo.io/age for encryption and Ed25519 for signatures.
//
// Reach for Encrypt and Decrypt to keep a hospital's key material and
// checkpoints on disk: pass the hospital's age recipient (from an X25519 or
// hybrid identity file, see ParseIdentities) or an age.ScryptRecipient made
// from a passphrase.
//
// Reach for Seal and Open to send a secret from one hospital to another
// through the coordinator, such as a threshold key share during the key
// ceremony. An envelope is signed by the sender, then encrypted to the
// recipient (sign-then-encrypt, recipient and label inside the signature);
// the coordinator reads only the routing Header and cannot open, alter or
// re-address it without Open failing. See the comment on the envelope format
// in envelope.go for why this order was chosen.
//
// Reach for Sign and Verify to sign model artifacts, since age alone does not
// prove who encrypted a file.
//
// Reach for FormatEnrolment and ParseEnrolment for the string in which a hospital
// publishes, through the coordinator, its age recipient and its verifying key.
//
// Everything here works on byte slices and never touches the network or the
// disk itself. Inputs are bounded (MaxPayload, MaxEnvelope) and every length
// prefix is checked before it is used.
package seal
