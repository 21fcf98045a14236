package broker

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
)

// RouteUser is the user the broker servers of a cluster log in to each
// other as, with the service token as password: every node of a cluster
// runs with the same tokens, as it must with the same accounts.
const RouteUser = "route"

// Cluster joins the embedded server to a NATS cluster. JetStream then runs
// clustered: every node needs a unique, stable ServerName, and buckets and
// streams can be replicated (fleet.Options.Replicas).
type Cluster struct {
	// Name is the cluster's name, the same on every node ("thinfleet").
	Name string
	// Listen is the host:port other nodes connect to, e.g. ":6222".
	Listen string
	// Routes are the other nodes, as host:port or nats-route://host:port;
	// listing this node too is harmless, so every node can get one list.
	Routes []string
}

// apply sets the cluster options of the embedded server. It is a no-op
// for a nil Cluster.
func (c *Cluster) apply(sopts *server.Options, opts Options) error {
	if c == nil {
		return nil
	}
	if opts.ServerName == "" {
		return errors.New("broker: a clustered server needs a unique server name")
	}
	host, port, err := splitListen(c.Listen)
	if err != nil {
		return fmt.Errorf("cluster %w", err)
	}
	if port == server.RANDOM_PORT && len(c.Routes) == 0 {
		return errors.New("broker: a cluster needs a fixed port or routes to the other nodes")
	}
	name := c.Name
	if name == "" {
		name = "thinfleet"
	}
	sopts.Cluster = server.ClusterOpts{
		Name: name, Host: host, Port: port,
		Username: RouteUser, Password: opts.ServiceToken,
	}
	for _, r := range c.Routes {
		u, err := routeURL(r, opts.ServiceToken)
		if err != nil {
			return err
		}
		sopts.Routes = append(sopts.Routes, u)
	}
	return nil
}

// routeURL turns "host:port" or "nats-route://host:port" into a route URL
// that logs in with the route user.
func routeURL(r, token string) (*url.URL, error) {
	r = strings.TrimSpace(r)
	if !strings.Contains(r, "://") {
		r = "nats-route://" + r
	}
	u, err := url.Parse(r)
	if err != nil || u.Host == "" || u.Port() == "" {
		return nil, fmt.Errorf("broker: route %q: want host:port", r)
	}
	u.User = url.UserPassword(RouteUser, token)
	return u, nil
}

// SplitRoutes splits a comma-separated list of routes, dropping empties.
func SplitRoutes(s string) []string {
	var out []string
	for _, r := range strings.Split(s, ",") {
		if r = strings.TrimSpace(r); r != "" {
			out = append(out, r)
		}
	}
	return out
}
