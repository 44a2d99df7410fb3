package discovery

import (
	"context"
	"errors"
	"net"
	"reflect"
	"testing"
)

// fakeResolver answers from maps, like cluster DNS would for a StatefulSet.
type fakeResolver struct {
	srv     map[string][]*net.SRV
	hosts   map[string][]string
	srvErr  error
	lookups []string
}

func (f *fakeResolver) LookupSRV(_ context.Context, service, proto, name string) (string, []*net.SRV, error) {
	f.lookups = append(f.lookups, "srv:"+service+"|"+proto+"|"+name)
	if f.srvErr != nil {
		return "", nil, f.srvErr
	}
	recs, ok := f.srv[name]
	if !ok {
		return "", nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
	}
	return name, recs, nil
}

func (f *fakeResolver) LookupHost(_ context.Context, host string) ([]string, error) {
	f.lookups = append(f.lookups, "host:"+host)
	addrs, ok := f.hosts[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return addrs, nil
}

const (
	testSRV    = "_api._tcp.dots-server.dots.svc.cluster.local"
	testDomain = "dots.svc.cluster.local"
)

func statefulSetDNS() *fakeResolver {
	return &fakeResolver{
		srv: map[string][]*net.SRV{testSRV: {
			// Unordered, with the trailing dot real DNS answers carry.
			{Target: "dots-server-1.dots-server.dots.svc.cluster.local.", Port: 7070},
			{Target: "dots-server-0.dots-server.dots.svc.cluster.local.", Port: 7070},
		}},
		hosts: map[string][]string{
			"dots-server-0.dots.svc.cluster.local": {"10.96.0.20"},
			"dots-server-1.dots.svc.cluster.local": {"fd00::21", "10.96.0.21"},
		},
	}
}

func TestDNSServers(t *testing.T) {
	r := statefulSetDNS()
	d := &DNS{SRVName: testSRV, NFSDomain: testDomain, Resolver: r}
	got, err := d.Servers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []Server{
		{Name: "dots-server-0", APIAddress: "dots-server-0.dots-server.dots.svc.cluster.local:7070", NFSAddress: "10.96.0.20"},
		{Name: "dots-server-1", APIAddress: "dots-server-1.dots-server.dots.svc.cluster.local:7070", NFSAddress: "10.96.0.21"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("servers:\n got %+v\nwant %+v", got, want)
	}
	if r.lookups[0] != "srv:||"+testSRV {
		t.Errorf("SRV must be looked up by its full name, got %q", r.lookups[0])
	}
}

func TestDNSScaleUpAddsServer(t *testing.T) {
	r := statefulSetDNS()
	d := &DNS{SRVName: testSRV, NFSDomain: testDomain, NFSPort: 20490, Resolver: r}
	r.srv[testSRV] = append(r.srv[testSRV], &net.SRV{Target: "dots-server-2.dots-server.dots.svc.cluster.local.", Port: 7070})
	r.hosts["dots-server-2.dots.svc.cluster.local"] = []string{"10.96.0.22"}
	got, err := d.Servers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[2].Name != "dots-server-2" || got[2].NFSAddress != "10.96.0.22" || got[2].NFSPort != 20490 {
		t.Fatalf("scaled-up server missing or wrong: %+v", got)
	}
}

func TestDNSSkipsServerWithoutNFSService(t *testing.T) {
	r := statefulSetDNS()
	// A replica beyond the per-pod Services the chart rendered.
	r.srv[testSRV] = append(r.srv[testSRV], &net.SRV{Target: "dots-server-9.dots-server.dots.svc.cluster.local.", Port: 7070})
	// And one whose Service name resolves to something that is not an IP.
	r.srv[testSRV] = append(r.srv[testSRV], &net.SRV{Target: "dots-server-8.dots-server.dots.svc.cluster.local.", Port: 7070})
	r.hosts["dots-server-8.dots.svc.cluster.local"] = []string{"not-an-ip"}
	d := &DNS{SRVName: testSRV, NFSDomain: testDomain + ".", Resolver: r}
	got, err := d.Servers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("want only the two servers with an NFS address, got %+v", got)
	}
}

func TestDNSSkipsBadTargetsAndDuplicates(t *testing.T) {
	r := statefulSetDNS()
	r.srv[testSRV] = append(r.srv[testSRV],
		&net.SRV{Target: "dots-server-0.dots-server.dots.svc.cluster.local.", Port: 7070},
		&net.SRV{Target: "Not_A_Label.dots-server.dots.svc.cluster.local.", Port: 7070},
		&net.SRV{Target: "a-server-name-that-is-far-too-long-for-ids.x.", Port: 7070},
	)
	d := &DNS{SRVName: testSRV, NFSDomain: testDomain, Resolver: r}
	got, err := d.Servers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("want 2 servers, got %+v", got)
	}
}

func TestDNSSRVFailure(t *testing.T) {
	r := statefulSetDNS()
	r.srvErr = errors.New("i/o timeout")
	d := &DNS{SRVName: testSRV, NFSDomain: testDomain, Resolver: r}
	if _, err := d.Servers(context.Background()); !errors.Is(err, ErrLookup) {
		t.Fatalf("want ErrLookup, got %v", err)
	}
	d.SRVName = "_api._tcp.nothing.dots.svc.cluster.local"
	r.srvErr = nil
	if _, err := d.Servers(context.Background()); !errors.Is(err, ErrLookup) {
		t.Fatalf("want ErrLookup for NXDOMAIN, got %v", err)
	}
}

func TestParseDNSFlag(t *testing.T) {
	d, err := ParseDNSFlag("srv=" + testSRV + ",nfs-domain=" + testDomain + ",nfs-port=2050")
	if err != nil {
		t.Fatal(err)
	}
	if d.SRVName != testSRV || d.NFSDomain != testDomain || d.NFSPort != 2050 || d.Resolver != nil {
		t.Fatalf("parsed %+v", d)
	}
	for _, bad := range []string{
		"",
		"srv=" + testSRV,           // no nfs-domain
		"nfs-domain=" + testDomain, // no srv
		"srv=dots-server.dots.svc,nfs-domain=" + testDomain, // not an SRV name
		"srv=" + testSRV + ",nfs-domain=bad domain",
		"srv=" + testSRV + ",nfs-domain=" + testDomain + ",nfs-port=x",
		"srv=" + testSRV + ",nfs-domain=" + testDomain + ",nfs-port=70000",
		"srv=" + testSRV + ",nfs-domain=" + testDomain + ",zone=a",
		"srv=" + testSRV + ",nfs-domain",
		"srv=_api._tcp..dots.svc,nfs-domain=" + testDomain,
	} {
		if _, err := ParseDNSFlag(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseDNSFlag(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}

// The real resolver must satisfy the interface.
var _ Resolver = net.DefaultResolver
