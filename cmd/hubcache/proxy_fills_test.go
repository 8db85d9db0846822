package main

import (
	"testing"
	"time"
)

func TestFillFlagsAreCheckedBeforeTheProxyStarts(t *testing.T) {
	cases := []struct {
		name    string
		flags   fillFlags
		podIP   string
		wantErr bool
	}{
		{name: "an explicit advertise address is accepted", flags: fillFlags{advertise: "10.0.0.7:5000", secret: "s", leaseTTL: time.Minute}},
		{name: "POD_IP and the listen port make the default address", flags: fillFlags{secret: "s", leaseTTL: time.Minute}, podIP: "10.0.0.7"},
		{name: "no address at all is accepted (fills are then not shared)", flags: fillFlags{leaseTTL: time.Minute}},
		{name: "an address without a port is refused", flags: fillFlags{advertise: "10.0.0.7", secret: "s", leaseTTL: time.Minute}, wantErr: true},
		{name: "a lease TTL under a second is refused", flags: fillFlags{advertise: "10.0.0.7:5000", secret: "s", leaseTTL: time.Millisecond}, wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("POD_IP", tc.podIP)
			_, err := fillOption(tc.flags, ":5000", nil)
			if (err != nil) != tc.wantErr {
				t.Fatalf("fillOption() error = %v, want error %v", err, tc.wantErr)
			}
		})
	}
}
