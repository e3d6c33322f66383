package main

import (
	"reflect"
	"testing"
)

func TestSplitDash(t *testing.T) {
	cases := []struct {
		args     []string
		dash     int
		wantArgs []string
		wantDash int
	}{
		{[]string{"demo", "--", "/bin/sh", "-c", "id"}, -1, []string{"demo", "/bin/sh", "-c", "id"}, 1},
		{[]string{"/bin/sh", "-c", "id"}, 0, []string{"/bin/sh", "-c", "id"}, 0},
		{[]string{"demo"}, -1, []string{"demo"}, -1},
		{[]string{"demo", "--", "x", "--", "y"}, -1, []string{"demo", "x", "--", "y"}, 1},
	}
	for _, tc := range cases {
		args, dash := splitDash(tc.args, tc.dash)
		if !reflect.DeepEqual(args, tc.wantArgs) || dash != tc.wantDash {
			t.Errorf("splitDash(%q, %d) = %q, %d; want %q, %d", tc.args, tc.dash, args, dash, tc.wantArgs, tc.wantDash)
		}
	}
}
