package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// fetch against a real loopback server (Go never proxies loopback, so no
// proxy is involved here; test/serve_egress_test.go fetches through
// clawrun's egress proxy from inside a container).
func TestFetch(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			fmt.Fprint(w, strings.Repeat("x", maxFetchBody+10))
			return
		}
		w.WriteHeader(http.StatusTeapot)
		fmt.Fprintf(w, "saw %s?%s\n", r.URL.Path, r.URL.RawQuery)
	}))
	defer srv.Close()
	t.Setenv("FETCH_TEST_BASE", srv.URL)
	tests := []struct{ arg, want string }{
		{srv.URL + "/a?b=c", "fetch " + srv.URL + "/a?b=c: 418 I'm a teapot: saw /a?b=c"},
		{"<" + srv.URL + "/s|label>", "fetch " + srv.URL + "/s: 418 I'm a teapot: saw /s?"},
		{"$FETCH_TEST_BASE/env?k=$FETCH_TEST_UNSET", "fetch " + srv.URL + "/env?k=: 418 I'm a teapot: saw /env?k="},
		{srv.URL + "/big", "fetch " + srv.URL + "/big: 200 OK: " + strings.Repeat("x", maxFetchBody) + " …"},
		{"", "usage: fetch URL"},
		{"a b", "usage: fetch URL"},
		{"http://127.0.0.1:1/", "fetch http://127.0.0.1:1/: Get \"http://127.0.0.1:1/\": dial tcp 127.0.0.1:1: connect: connection refused"},
	}
	for _, tc := range tests {
		if got := answer(message{Text: strings.TrimSpace("fetch " + tc.arg)}, hostSystem{}); !strings.HasPrefix(got, tc.want) {
			t.Errorf("fetch %q = %q, want %q", tc.arg, got, tc.want)
		}
	}
	if got := answer(message{Text: "fetch " + srv.URL}, fake); got != "fetch: this agent cannot reach the network" {
		t.Errorf("fetch without a network: %q", got)
	}
}
