package driver

import (
	"flag"
	"net"
	"reflect"
	"testing"
)

func ipnet(s string) net.Addr {
	ip, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	n.IP = ip
	return n
}

// A node whose NFS traffic kube-proxy masquerades to its tunnel or bridge
// address (overlay networks) reports those addresses too, so per-node
// exports admit it whichever one its traffic leaves from.
func TestInterfaceAddresses(t *testing.T) {
	// flannel on a node 10.0.1.5: cni0 10.244.1.1, flannel.1 10.244.1.0;
	// docker0, loopback and link-local addresses are never node addresses.
	host := []net.Addr{ipnet("127.0.0.1/8"), ipnet("10.0.1.5/24"), ipnet("10.244.1.1/24"), ipnet("10.244.1.0/32"),
		ipnet("172.17.0.1/16"), ipnet("::1/128"), ipnet("fe80::1/64"), ipnet("169.254.1.1/16"), &net.IPAddr{IP: net.ParseIP("192.168.9.9")}}
	for _, tc := range []struct {
		name         string
		given, cidrs []string
		want, left   []string
	}{
		{name: "no CIDRs: the given address only", given: []string{"10.0.1.5"}, want: []string{"10.0.1.5"}},
		{name: "node CIDR only", given: []string{"10.0.1.5"}, cidrs: []string{"10.0.0.0/16"}, want: []string{"10.0.1.5"}},
		{name: "node and pod CIDRs (overlay)", given: []string{"10.0.1.5"}, cidrs: []string{"10.0.0.0/16", "10.244.0.0/16"},
			want: []string{"10.0.1.5", "10.244.1.0", "10.244.1.1"}},
		{name: "loopback and link-local never", given: []string{"10.0.1.5"}, cidrs: []string{"0.0.0.0/0", "::/0"},
			want: []string{"10.0.1.5", "10.244.1.0", "10.244.1.1", "172.17.0.1"}, left: []string{"192.168.9.9"}},
		{name: "nothing given", cidrs: []string{"10.244.0.0/16"}, want: []string{"10.244.1.0", "10.244.1.1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := NodeOptions{Addresses: tc.given, AddressCIDRs: tc.cidrs}
			got, left, err := o.InterfaceAddresses(host)
			if err != nil || !reflect.DeepEqual(got, tc.want) || !reflect.DeepEqual(left, tc.left) {
				t.Errorf("InterfaceAddresses = %v, left out %v, %v; want %v, left out %v", got, left, err, tc.want, tc.left)
			}
			o.Addresses, o.NodeID, o.KubeletDir, o.MountMode, o.StatsTimeout, o.UnmountTimeout = got, "node-1", "/var/lib/kubelet", "nfs", 1, 1
			if err := o.Validate(); err != nil {
				t.Errorf("the node ID of these addresses: %v", err)
			}
		})
	}
	var o NodeOptions
	fs := flag.NewFlagSet("node", flag.ContinueOnError)
	o.AddFlags(fs)
	if err := fs.Parse([]string{"--node-id=n", "--node-address=10.0.1.5", "--node-address-cidrs=10.0.0.0/16, 10.244.0.0/16"}); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(o.AddressCIDRs, []string{"10.0.0.0/16", "10.244.0.0/16"}) || o.Validate() != nil {
		t.Errorf("flags: %v, %v", o.AddressCIDRs, o.Validate())
	}
	o.AddressCIDRs = []string{"10.0.0.0/33"}
	if o.Validate() == nil {
		t.Error("a bad CIDR accepted")
	}
}
