// probe: tiny static image for the e2e cluster smoke test. It calls the API
// server through the in-cluster `kubernetes` Service (KUBERNETES_SERVICE_HOST:
// KUBERNETES_SERVICE_PORT, i.e. 10.96.0.1:443) with the pod's ServiceAccount
// token, verifying TLS with the mounted CA, prints "PROBE OK <version>" or
// "PROBE FAIL <err>", then serves HTTP on :8080 ("probe ok <hostname>") until
// SIGTERM, so Services, NodePorts and port-forward can be checked too.
// It also resolves kubernetes.default.svc.cluster.local ("DNS OK <ip>" or
// "DNS FAIL <err>"). `probe sleep` skips the API and DNS checks.
// `probe connect HOST:PORT SECONDS` opens one TCP connection and prints
// "CONNECT OK", "CONNECT TIMEOUT" or "CONNECT FAIL <err>" (NetworkPolicy checks).
package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

const saDir = "/var/run/secrets/kubernetes.io/serviceaccount"

func probe() (string, error) {
	host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
	if host == "" {
		return "", fmt.Errorf("KUBERNETES_SERVICE_HOST not set")
	}
	ca, err := os.ReadFile(saDir + "/ca.crt")
	if err != nil {
		return "", err
	}
	token, err := os.ReadFile(saDir + "/token")
	if err != nil {
		return "", err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "kubernetes.default.svc"}}}
	url := "https://" + net.JoinHostPort(host, port) + "/apis/authentication.k8s.io/v1/selfsubjectreviews"
	req, _ := http.NewRequest("POST", url, strings.NewReader(`{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}`))
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return "", fmt.Errorf("%s: %s", resp.Status, body)
	}
	return string(body), nil
}

// connect: one TCP connection attempt, its outcome on stdout; exit 0 whatever it is.
func connect(addr, seconds string) {
	timeout, err := time.ParseDuration(seconds + "s")
	if err != nil {
		fmt.Println("CONNECT FAIL bad timeout:", err)
		return
	}
	conn, err := net.DialTimeout("tcp", addr, timeout)
	switch {
	case err == nil:
		conn.Close()
		fmt.Println("CONNECT OK", addr)
	case os.IsTimeout(err):
		fmt.Println("CONNECT TIMEOUT", addr)
	default:
		fmt.Println("CONNECT FAIL", err)
	}
}

func main() {
	if len(os.Args) == 4 && os.Args[1] == "connect" {
		connect(os.Args[2], os.Args[3])
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "sleep" {
		fmt.Println("probe: sleeping")
	} else {
		var err error
		for i := 0; i < 30; i++ {
			var out string
			if out, err = probe(); err == nil {
				fmt.Println("PROBE OK", out)
				break
			}
			fmt.Println("probe attempt failed:", err)
			time.Sleep(2 * time.Second)
		}
		if err != nil {
			fmt.Println("PROBE FAIL", err)
		}
		// cluster DNS (when the cluster runs CoreDNS): the API Service by name
		for i := 0; i < 30; i++ {
			addrs, err := net.LookupHost("kubernetes.default.svc.cluster.local")
			if err == nil {
				fmt.Println("DNS OK", strings.Join(addrs, ","))
				break
			}
			if i == 29 {
				fmt.Println("DNS FAIL", err)
			}
			time.Sleep(2 * time.Second)
		}
	}
	host, _ := os.Hostname()
	go func() {
		err := http.ListenAndServe(":8080", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "probe ok %s\n", host)
		}))
		fmt.Println("http server:", err)
	}()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
}
