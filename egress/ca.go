package egress

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"
)

// CA file names inside the CA directory.
const (
	CACertFile = "ca.pem"     // the certificate, for the container's trust store
	CAKeyFile  = "ca-key.pem" // the private key, mode 0600, never mounted anywhere
)

const (
	caLifetime   = 5 * 365 * 24 * time.Hour
	caRenewal    = 30 * 24 * time.Hour // a CA this close to expiry is replaced
	leafLifetime = 7 * 24 * time.Hour
	leafRenewal  = 24 * time.Hour
)

// CA is a clawrun certificate authority for interception mode. It is
// name-constrained to the hosts it was created for, so even a copy trusted
// by mistake outside its container vouches for nothing else, and never for
// an IP address.
type CA struct {
	dir   string
	cert  *x509.Certificate
	key   crypto.Signer
	pem   []byte
	hosts []string

	mu      sync.Mutex
	leafKey *ecdsa.PrivateKey
	leaves  map[string]*tls.Certificate
}

// LoadOrCreateCA loads the CA in dir (ca.pem, ca-key.pem), or creates one
// when there is none, it expires within 30 days, or it was made for other
// hosts. dir is created with mode 0700; the key is written with mode 0600,
// and a key file readable by anyone else is refused.
func LoadOrCreateCA(dir string, hosts []string) (*CA, error) {
	want, err := caHosts(hosts)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("clawrun CA: %w", err)
	}
	ca, err := loadCA(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, err
	case slices.Equal(ca.hosts, want) && time.Until(ca.cert.NotAfter) > caRenewal:
		return ca, nil
	}
	return createCA(dir, want)
}

// caHosts normalizes, sorts and dedupes the hosts a CA may issue for.
func caHosts(hosts []string) ([]string, error) {
	var out []string
	for _, h := range hosts {
		name, err := normalizeName(h)
		if err != nil {
			return nil, fmt.Errorf("clawrun CA: %w", err)
		}
		out = append(out, name)
	}
	if len(out) == 0 {
		return nil, errors.New("clawrun CA: no hosts; a CA is only made for the hosts of interception-mode secrets")
	}
	sort.Strings(out)
	return slices.Compact(out), nil
}

func loadCA(dir string) (*CA, error) {
	certPath, keyPath := filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
	keyInfo, err := os.Stat(keyPath)
	if err != nil {
		return nil, err
	}
	if keyInfo.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("clawrun CA: %s has mode %04o: the key must be readable by its owner only; run chmod 600 %s, or remove it to make a new CA", keyPath, keyInfo.Mode().Perm(), keyPath)
	}
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, err
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("clawrun CA in %s: %w; remove %s and %s to make a new one", dir, err, CACertFile, CAKeyFile)
	}
	cert := pair.Leaf
	if cert == nil {
		if cert, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, fmt.Errorf("clawrun CA in %s: %w", dir, err)
		}
	}
	key, ok := pair.PrivateKey.(crypto.Signer)
	if !ok || !cert.IsCA {
		return nil, fmt.Errorf("clawrun CA in %s: %s is not a CA certificate with a signing key; remove both files to make a new one", dir, CACertFile)
	}
	return newCA(dir, cert, key, certPEM), nil
}

func newCA(dir string, cert *x509.Certificate, key crypto.Signer, certPEM []byte) *CA {
	hosts := append([]string(nil), cert.PermittedDNSDomains...)
	sort.Strings(hosts)
	return &CA{dir: dir, cert: cert, key: key, pem: certPEM, hosts: hosts, leaves: map[string]*tls.Certificate{}}
}

func createCA(dir string, hosts []string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("clawrun CA: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:                randomSerial(),
		Subject:                     pkix.Name{Organization: []string{"clawrun"}, CommonName: "clawrun egress CA"},
		NotBefore:                   now.Add(-time.Hour),
		NotAfter:                    now.Add(caLifetime),
		IsCA:                        true,
		BasicConstraintsValid:       true,
		MaxPathLenZero:              true,
		KeyUsage:                    x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		PermittedDNSDomainsCritical: true,
		PermittedDNSDomains:         hosts,
		ExcludedIPRanges: []*net.IPNet{
			{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)},
			{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)},
		},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("clawrun CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("clawrun CA: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("clawrun CA: %w", err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	// The key first: a certificate without its key is never left behind.
	if err := writeFileAtomic(filepath.Join(dir, CAKeyFile), keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(filepath.Join(dir, CACertFile), certPEM, 0o644); err != nil {
		return nil, err
	}
	return newCA(dir, cert, key, certPEM), nil
}

// writeFileAtomic writes through a temporary file created with the final
// mode, so the key is never readable by others, not even for a moment.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return fmt.Errorf("clawrun CA: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("clawrun CA: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("clawrun CA: writing %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("clawrun CA: writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("clawrun CA: writing %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("clawrun CA: %w", err)
	}
	return nil
}

func randomSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic("crypto/rand failed: " + err.Error()) // the kernel's RNG does not fail
	}
	return n.Add(n, big.NewInt(1))
}

// Dir is the directory the CA lives in.
func (c *CA) Dir() string { return c.dir }

// CertPEM is the CA certificate to trust inside the container (and only
// there).
func (c *CA) CertPEM() []byte { return bytes.Clone(c.pem) }

// Hosts are the names the CA may issue certificates for.
func (c *CA) Hosts() []string { return slices.Clone(c.hosts) }

// Covers reports whether the CA's name constraints allow a certificate for
// host.
func (c *CA) Covers(host string) bool {
	for _, h := range c.hosts {
		if host == h || (len(host) > len(h) && host[len(host)-len(h)-1] == '.' && host[len(host)-len(h):] == h) {
			return true
		}
	}
	return false
}

// Leaf returns a server certificate for host, issued by the CA and cached
// until a day before it expires.
func (c *CA) Leaf(host string) (*tls.Certificate, error) {
	name, err := normalizeName(host)
	if err != nil {
		return nil, fmt.Errorf("clawrun CA: %w", err)
	}
	if !c.Covers(name) {
		return nil, fmt.Errorf("clawrun CA in %s may not issue a certificate for %s (it was made for %v)", c.dir, name, c.hosts)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if leaf := c.leaves[name]; leaf != nil && time.Until(leaf.Leaf.NotAfter) > leafRenewal {
		return leaf, nil
	}
	if c.leafKey == nil {
		if c.leafKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			return nil, fmt.Errorf("clawrun CA: %w", err)
		}
	}
	now := time.Now()
	notAfter := now.Add(leafLifetime)
	if notAfter.After(c.cert.NotAfter) {
		notAfter = c.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: name},
		DNSNames:              []string{name},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &c.leafKey.PublicKey, c.key)
	if err != nil {
		return nil, fmt.Errorf("clawrun CA: certificate for %s: %w", name, err)
	}
	parsed, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("clawrun CA: certificate for %s: %w", name, err)
	}
	leaf := &tls.Certificate{Certificate: [][]byte{der, c.cert.Raw}, PrivateKey: c.leafKey, Leaf: parsed}
	c.leaves[name] = leaf
	return leaf, nil
}
