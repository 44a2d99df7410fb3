package discovery

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	"github.com/dots-csi/dots/pkg/api"
	"k8s.io/klog/v2"
)

// ErrLookup reports that DNS could not list the servers.
var ErrLookup = errors.New("dns discovery lookup failed")

// Resolver is the part of *net.Resolver that DNS discovery uses; tests
// replace it.
type Resolver interface {
	LookupSRV(ctx context.Context, service, proto, name string) (string, []*net.SRV, error)
	LookupHost(ctx context.Context, host string) ([]string, error)
}

// DNS discovers the storage servers of a StatefulSet from cluster DNS, so
// scaling the StatefulSet adds servers without touching the controller:
//
//   - the SRV records of the StatefulSet's headless Service for its API port
//     (e.g. _api._tcp.dots-server.NS.svc.cluster.local) name one target per
//     pod, dots-server-N.dots-server.NS.svc.cluster.local, and its API port;
//     the target's first label is the server name, the target and port its
//     API address (a host name: the pod IP changes on restart, the name not);
//   - the per-pod ClusterIP Service of the same name, dots-server-N.NFSDomain,
//     is resolved to its ClusterIP, which becomes the NFS address. The IP is
//     stored, not the name: PVs keep it for life, and mounting must not
//     depend on cluster DNS being up.
type DNS struct {
	// SRVName is the full SRV record name of the headless Service's API port.
	SRVName string
	// NFSDomain is the domain of the per-pod Services, e.g. NS.svc.cluster.local.
	NFSDomain string
	// NFSPort is the NFS port; 0 means 2049.
	NFSPort int
	// Resolver defaults to net.DefaultResolver.
	Resolver Resolver
}

// ParseDNSFlag parses the controller's --discover-dns value:
// "srv=_api._tcp.SVC.NS.svc.DOMAIN,nfs-domain=NS.svc.DOMAIN[,nfs-port=P]".
func ParseDNSFlag(value string) (*DNS, error) {
	d := &DNS{}
	for _, kv := range strings.Split(value, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("%w: %q: want key=value pairs", ErrInvalid, kv)
		}
		switch k {
		case "srv":
			d.SRVName = v
		case "nfs-domain":
			d.NFSDomain = v
		case "nfs-port":
			p, err := strconv.Atoi(v)
			if err != nil {
				return nil, fmt.Errorf("%w: nfs-port %q", ErrInvalid, v)
			}
			d.NFSPort = p
		default:
			return nil, fmt.Errorf("%w: unknown key %q (want srv, nfs-domain, nfs-port)", ErrInvalid, k)
		}
	}
	if err := d.Validate(); err != nil {
		return nil, err
	}
	return d, nil
}

// Validate checks the configuration.
func (d *DNS) Validate() error {
	if !api.IsDNSName(d.SRVName, true) || !strings.HasPrefix(d.SRVName, "_") {
		return fmt.Errorf("%w: srv %q is not an SRV record name like _api._tcp.SVC.NS.svc.cluster.local", ErrInvalid, d.SRVName)
	}
	if !api.IsDNSName(d.NFSDomain, true) {
		return fmt.Errorf("%w: nfs-domain %q is not a domain name", ErrInvalid, d.NFSDomain)
	}
	if d.NFSPort < 0 || d.NFSPort > 65535 {
		return fmt.Errorf("%w: nfs-port %d out of range", ErrInvalid, d.NFSPort)
	}
	return nil
}

// Servers resolves the SRV records, then each server's NFS Service. A
// server whose NFS Service does not resolve (yet) is left out and logged:
// volumes must never be placed where nodes cannot mount them. A failed SRV
// lookup is an error, so the caller keeps the list it had.
func (d *DNS) Servers(ctx context.Context) ([]Server, error) {
	r := d.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	_, srvs, err := r.LookupSRV(ctx, "", "", d.SRVName)
	if err != nil {
		return nil, fmt.Errorf("%w: SRV %s: %v", ErrLookup, d.SRVName, err)
	}
	byName := map[string]Server{}
	for _, srv := range srvs {
		host := strings.TrimSuffix(srv.Target, ".")
		name, _, _ := strings.Cut(host, ".")
		if err := validateName(name); err != nil {
			klog.ErrorS(err, "Skipping SRV target", "srv", d.SRVName, "target", srv.Target)
			continue
		}
		if _, dup := byName[name]; dup {
			continue
		}
		nfsHost := name + "." + strings.TrimSuffix(d.NFSDomain, ".")
		ip, err := d.serviceIP(ctx, r, nfsHost)
		if err != nil {
			klog.ErrorS(err, "Skipping server without an NFS Service address", "server", name, "service", nfsHost)
			continue
		}
		s := Server{
			Name:       name,
			APIAddress: net.JoinHostPort(host, strconv.Itoa(int(srv.Port))),
			NFSAddress: ip,
			NFSPort:    d.NFSPort,
		}
		if err := s.Validate(); err != nil {
			klog.ErrorS(err, "Skipping invalid server", "server", name)
			continue
		}
		byName[name] = s
	}
	out := make([]Server, 0, len(byName))
	for _, s := range byName {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	klog.V(4).InfoS("DNS discovery", "srv", d.SRVName, "servers", len(out))
	return out, nil
}

// serviceIP resolves a Service name to one IP, preferring IPv4 so the
// choice is stable on dual-stack clusters.
func (d *DNS) serviceIP(ctx context.Context, r Resolver, host string) (string, error) {
	addrs, err := r.LookupHost(ctx, host)
	if err != nil {
		return "", fmt.Errorf("%w: %s: %v", ErrLookup, host, err)
	}
	var v4, v6 []string
	for _, a := range addrs {
		ip := net.ParseIP(a)
		switch {
		case ip == nil:
		case ip.To4() != nil:
			v4 = append(v4, ip.String())
		default:
			v6 = append(v6, ip.String())
		}
	}
	sort.Strings(v4)
	sort.Strings(v6)
	if all := append(v4, v6...); len(all) > 0 {
		return all[0], nil
	}
	return "", fmt.Errorf("%w: %s resolved to no IP address", ErrLookup, host)
}
