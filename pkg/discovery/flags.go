package discovery

import (
	"errors"
	"flag"
)

// Flags bind where the servers are listed, as the controller and the node
// plugin take it, to a configuration's fields: --server (repeatable),
// --servers-file or --discover-dns.
type Flags struct {
	Servers *[]Server
	File    *string
	DNS     *string
}

// AddFlags registers --server, --servers-file and --discover-dns.
func (f Flags) AddFlags(fs *flag.FlagSet) {
	fs.Func("server", "a storage server: name=N,api=HOST:PORT,nfs=ADDR[,nfs-port=P] (repeatable)", func(v string) error {
		s, err := ParseFlag(v)
		if err != nil {
			return err
		}
		*f.Servers = append(*f.Servers, s)
		return nil
	})
	fs.StringVar(f.File, "servers-file", *f.File, "JSON file listing the storage servers (re-read each time they are needed)")
	fs.StringVar(f.DNS, "discover-dns", *f.DNS, "discover servers from DNS: srv=_api._tcp.SVC.NS.svc.DOMAIN,nfs-domain=NS.svc.DOMAIN[,nfs-port=P]")
}

// Given counts the sources given.
func (f Flags) Given() int {
	n := 0
	for _, set := range []bool{len(*f.Servers) > 0, *f.File != "", *f.DNS != ""} {
		if set {
			n++
		}
	}
	return n
}

// Validate checks the servers given and that at most one source is set.
func (f Flags) Validate() error {
	if f.Given() > 1 {
		return errors.New("give at most one of --server, --servers-file, --discover-dns")
	}
	return ValidateAll(*f.Servers)
}

// Source is the source the flags name; nil when none is given.
func (f Flags) Source() (Source, error) {
	switch {
	case *f.File != "":
		return File(*f.File), nil
	case *f.DNS != "":
		return ParseDNSFlag(*f.DNS)
	case len(*f.Servers) > 0:
		return Static(*f.Servers), nil
	}
	return nil, nil
}
