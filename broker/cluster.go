package broker

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
)

// RouteUser is the user the broker servers of a cluster log in to each
// other as, with the service token as password: every node of a cluster
// runs with the same tokens, as it must with the same accounts.
const RouteUser = "route"

// Cluster joins the embedded server to a NATS cluster. JetStream then runs
// clustered: every node needs a unique, stable ServerName, and buckets and
// streams can be replicated (store.Options.Replicas).
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
	if err := singleStore(sopts.StoreDir); err != nil {
		return err
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

// singleStore refuses a store that a single, unclustered broker made. Its
// streams are its own, outside the cluster's meta group: started as a
// cluster node it would serve them beside the cluster's new copies, and
// clients would get two diverging answers in turn (a split brain that
// every health check passes). A clustered store keeps the meta group's
// state in jetstream/<system account>/_js_; a single broker's has
// streams without it.
func singleStore(storeDir string) error {
	js := filepath.Join(storeDir, "jetstream")
	streams, _ := filepath.Glob(filepath.Join(js, "*", "streams", "*"))
	if len(streams) == 0 {
		return nil
	}
	// The meta group's state is kept under the system account's folder,
	// named by the account ($SYS, or its public key with JWT accounts).
	if meta, _ := filepath.Glob(filepath.Join(js, "*", "_js_")); len(meta) > 0 {
		return nil
	}
	return fmt.Errorf("broker: %s holds the store of a single broker (started without --cluster); "+
		"a cluster node started on it would serve its streams beside the cluster's and give two answers in turn. "+
		"Refusing to start. Start the cluster on new, empty data folders (docker compose down -v removes the old volumes, and with them the fleet's state), "+
		"or keep running this broker alone", storeDir)
}
