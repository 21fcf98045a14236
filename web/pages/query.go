package pages

import (
	"net/url"
	"strconv"
	"strings"
)

// ClientsQuery is what the Clients page shows: a search, filters, a sort
// and a page. Its zero value shows the first page of every device by id.
type ClientsQuery struct {
	Q        string // part of an id or hostname, any case
	Alive    string // "", "alive" or "notalive"
	Version  string // exactly this version; "none" for no version yet
	Outdated bool
	Install  string // "", "failed" or "held" (held back)
	// Labels is a label selector ("site=berlin,ring=canary", fleet.
	// ParseSelector's form) over the devices' labels and tags.
	Labels string
	Group  string // the devices of this group
	Pinned bool   // only devices pinned to a version, by their own pin or a group's
	Sort   string // a column of SortColumns; "" is id
	Desc   bool
	Page   int // from 1
	Per    int
}

// SortColumns are the columns the Clients page sorts by.
var SortColumns = []string{"id", "hostname", "os", "cpu", "memory", "disk", "addresses", "version", "status", "seen"}

// DefaultPer is how many devices a page shows unless asked otherwise.
const DefaultPer = 50

// ParseClientsQuery reads a query from a URL's query string, ignoring what
// it does not understand.
func ParseClientsQuery(v url.Values) ClientsQuery {
	q := ClientsQuery{
		Q:        strings.TrimSpace(v.Get("q")),
		Version:  strings.TrimSpace(v.Get("version")),
		Outdated: v.Get("outdated") != "",
		Labels:   strings.TrimSpace(v.Get("labels")),
		Group:    strings.TrimSpace(v.Get("group")),
		Pinned:   v.Get("pinned") != "",
		Page:     1, Per: DefaultPer,
	}
	if a := v.Get("alive"); a == "alive" || a == "notalive" {
		q.Alive = a
	}
	if i := v.Get("install"); i == "failed" || i == "held" {
		q.Install = i
	}
	sort := v.Get("sort")
	q.Desc = strings.HasPrefix(sort, "-")
	sort = strings.TrimPrefix(sort, "-")
	for _, c := range SortColumns {
		if c == sort {
			q.Sort = c
		}
	}
	if q.Sort == "" {
		q.Desc = false
	}
	if n, err := strconv.Atoi(v.Get("page")); err == nil && n > 0 {
		q.Page = n
	}
	if n, err := strconv.Atoi(v.Get("per")); err == nil && n > 0 && n <= 500 {
		q.Per = n
	}
	return q
}

func (q ClientsQuery) values() url.Values {
	v := url.Values{}
	set := func(k, s string) {
		if s != "" {
			v.Set(k, s)
		}
	}
	set("q", q.Q)
	set("alive", q.Alive)
	set("version", q.Version)
	set("install", q.Install)
	set("labels", q.Labels)
	set("group", q.Group)
	if q.Outdated {
		v.Set("outdated", "1")
	}
	if q.Pinned {
		v.Set("pinned", "1")
	}
	if q.Sort != "" {
		s := q.Sort
		if q.Desc {
			s = "-" + s
		}
		v.Set("sort", s)
	}
	if q.Page > 1 {
		v.Set("page", strconv.Itoa(q.Page))
	}
	if q.Per != DefaultPer && q.Per > 0 {
		v.Set("per", strconv.Itoa(q.Per))
	}
	return v
}

// URL is the Clients page showing q.
func (q ClientsQuery) URL() string {
	if s := q.values().Encode(); s != "" {
		return "/clients?" + s
	}
	return "/clients"
}

// PageURL is q on page n.
func (q ClientsQuery) PageURL(n int) string {
	q.Page = n
	return q.URL()
}

// SortURL is q sorted by col, first page; by col the other way round when
// q already sorts by it.
func (q ClientsQuery) SortURL(col string) string {
	if q.sortedBy() == col {
		q.Desc = !q.Desc
	} else {
		q.Desc = false
	}
	q.Sort, q.Page = col, 1
	if col == "id" && !q.Desc {
		q.Sort = ""
	}
	return q.URL()
}

// AriaSort is the aria-sort value of col's header.
func (q ClientsQuery) AriaSort(col string) string {
	switch {
	case q.sortedBy() != col:
		return "none"
	case q.Desc:
		return "descending"
	}
	return "ascending"
}

func (q ClientsQuery) sortedBy() string {
	if q.Sort == "" {
		return "id"
	}
	return q.Sort
}

// Filtered reports whether q narrows the devices down.
func (q ClientsQuery) Filtered() bool {
	return q.Q != "" || q.Alive != "" || q.Version != "" || q.Outdated || q.Install != "" ||
		q.Labels != "" || q.Group != "" || q.Pinned
}

// Filter is q's filters alone, as a query string: what a bulk action on
// every matching device acts on, and the page it returns to.
func (q ClientsQuery) Filter() string {
	q.Page, q.Sort, q.Desc, q.Per = 1, "", false, DefaultPer
	return q.values().Encode()
}
