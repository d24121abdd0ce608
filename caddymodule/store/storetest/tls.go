package storetest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TLSServerName is a DNS name in the server certificate of StartRedisTLS
// besides 127.0.0.1, for checking a configured server name.
const TLSServerName = "redis.test"

// TLSRedis is a redis-server that speaks TLS only on Addr, with a
// certificate signed by a CA made for the test, and that requires a
// client certificate signed by the same CA (tls-auth-clients,
// https://redis.io/docs/latest/operate/oss_and_stack/management/security/encryption/).
type TLSRedis struct {
	Addr string // host:port of the TLS listener
	// CA is the PEM file of the test CA; ClientCert and ClientKey a client
	// certificate it signed. OtherCA is a CA that signed nothing here.
	CA, ClientCert, ClientKey, OtherCA string
}

// StartRedisTLS starts a TLS redis-server with extra arguments (e.g. an
// ACL user). Its plaintext port is bound too, to loopback, so the starter
// can tell it is up; the store is pointed at the TLS port.
func StartRedisTLS(t testing.TB, extra ...string) *TLSRedis {
	t.Helper()
	dir := t.TempDir()
	ca, caKey := newCert(t, "tollgate test CA", nil, nil, true)
	writePEM(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", ca.Raw)
	srv, srvKey := newCert(t, "127.0.0.1", ca, caKey, false)
	writePEM(t, filepath.Join(dir, "server.pem"), "CERTIFICATE", srv.Raw)
	writeKey(t, filepath.Join(dir, "server-key.pem"), srvKey)
	cli, cliKey := newCert(t, "tollgate", ca, caKey, false)
	writePEM(t, filepath.Join(dir, "client.pem"), "CERTIFICATE", cli.Raw)
	writeKey(t, filepath.Join(dir, "client-key.pem"), cliKey)
	other, _ := newCert(t, "some other CA", nil, nil, true)
	writePEM(t, filepath.Join(dir, "other-ca.pem"), "CERTIFICATE", other.Raw)

	tlsPort, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{
		"--tls-port", strconv.Itoa(tlsPort),
		"--tls-cert-file", filepath.Join(dir, "server.pem"),
		"--tls-key-file", filepath.Join(dir, "server-key.pem"),
		"--tls-ca-cert-file", filepath.Join(dir, "ca.pem"),
		"--tls-auth-clients", "yes",
	}, extra...)
	startServer(t, args...)
	return &TLSRedis{
		Addr:       net.JoinHostPort("127.0.0.1", strconv.Itoa(tlsPort)),
		CA:         filepath.Join(dir, "ca.pem"),
		ClientCert: filepath.Join(dir, "client.pem"),
		ClientKey:  filepath.Join(dir, "client-key.pem"),
		OtherCA:    filepath.Join(dir, "other-ca.pem"),
	}
}

// newCert makes a certificate for name, signed by parent (self-signed when
// parent is nil). A leaf certificate is valid for 127.0.0.1 and for client
// and server authentication.
func newCert(t testing.TB, name string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, isCA bool) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
	if isCA {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage = x509.KeyUsageCertSign
	} else {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		tmpl.DNSNames = []string{TLSServerName}
	}
	signer, signKey := tmpl, key
	if parent != nil {
		signer, signKey = parent, parentKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func writePEM(t testing.TB, path, kind string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func writeKey(t testing.TB, path string, key *ecdsa.PrivateKey) {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, path, "EC PRIVATE KEY", der)
}
