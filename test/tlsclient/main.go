// Command tlsclient is the integration suite's HTTPS client, built static at
// test setup and placed at /tlsclient in the test rootfs (busybox wget speaks
// no TLS). It GETs its URL through HTTPS_PROXY, trusting the roots in
// SSL_CERT_FILE, prints the body and exits 1 with the error on failure.
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: tlsclient URL")
		os.Exit(2)
	}
	c := &http.Client{Timeout: 20 * time.Second} // the default transport: ProxyFromEnvironment
	resp, err := c.Get(os.Args[1])
	if err != nil {
		fmt.Println("tlsclient error:", err)
		os.Exit(1)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	fmt.Print(string(b))
	if err != nil || resp.StatusCode != http.StatusOK {
		fmt.Println("\ntlsclient status:", resp.Status, err)
		os.Exit(1)
	}
}
