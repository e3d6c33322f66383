package runtime

import (
	"reflect"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"
)

func TestWithCapabilities(t *testing.T) {
	tests := []struct {
		name    string
		caps    []string
		want    []string // every set
		wantErr bool
	}{
		{"none keeps all sets empty", nil, []string{}, false},
		{"one", []string{"CAP_NET_BIND_SERVICE"}, []string{"CAP_NET_BIND_SERVICE"}, false},
		{"two, duplicate once", []string{"CAP_CHOWN", "CAP_KILL", "CAP_CHOWN"}, []string{"CAP_CHOWN", "CAP_KILL"}, false},
		{"lower case refused", []string{"cap_chown"}, nil, true},
		{"no prefix refused", []string{"CHOWN"}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &specs.Spec{}
			err := Compose(WithNoCapabilities(), WithCapabilities(tt.caps))(s)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			c := s.Process.Capabilities
			sets := map[string][]string{"bounding": c.Bounding, "effective": c.Effective, "permitted": c.Permitted, "ambient": c.Ambient}
			if len(tt.caps) > 0 {
				// Ambient capabilities need the inheritable bit.
				sets["inheritable"] = c.Inheritable
			} else if len(c.Inheritable) != 0 {
				t.Errorf("inheritable = %v, want empty", c.Inheritable)
			}
			for name, got := range sets {
				if !reflect.DeepEqual(got, tt.want) {
					t.Errorf("%s = %v, want %v", name, got, tt.want)
				}
			}
		})
	}
}
