package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/holdfast/holdfast/config"
	"github.com/holdfast/holdfast/inventory"
	"github.com/holdfast/holdfast/persist"
)

func init() {
	commands["inspect"] = command{"list sessions, queues and retained messages (running: -c; stopped: --data)", inspect}
}

const inspectUsage = `(-c config.toml | --data DIR) [session filters] [--retained-prefix P] [--json]

Lists the persistent sessions (client id, connected or offline since when, protocol,
subscriptions, queue depth and payload bytes, in flight, and for a shared subscription group
the members holding its messages) and the retained messages.
-c asks the running broker through its admin listener ([admin] address, admin.token);
--data reads a stopped broker's data directory (read-only). --json prints the inventory as JSON.

With any of --client, --user, --online, --protocol, --min-queued, --sort, --desc, --limit and
--offset it lists one page of session rows instead, chosen as the console's sessions table
chooses them (GET /api/sessions); with --retained-prefix it sums the retained messages at and
under a topic by the next level (GET /api/retained). --json then prints the page or the sum (both:
{"sessions": page, "retained": sum}) in the API's JSON.
`

// pageFlags are inspect's flags that select a page of session rows, with the name of the API's
// parameter each one sets.
var pageFlags = map[string]string{
	"client": "client", "user": "user", "online": "online", "protocol": "protocol",
	"min-queued": "min_queued", "sort": "sort", "limit": "limit", "offset": "offset",
}

func inspect(env *Env, args []string) error {
	fs := newFlags(env, "inspect", inspectUsage)
	cfgPath := fs.String("c", "", "the running broker's configuration: ask through its admin listener")
	dataDir := fs.String("data", "", "a stopped broker's data directory: read it directly")
	asJSON := fs.Bool("json", false, "print the inventory as JSON")
	fs.String("client", "", "only sessions whose client id (a shared group's: its $share/ subscription) contains `text`, in any case")
	fs.String("user", "", "only sessions whose username contains `text`, in any case")
	fs.String("online", "", "only sessions online (true) or offline (false): `true|false`")
	fs.String("protocol", "", "only sessions of MQTT `version` 3.1, 3.1.1 or 5")
	fs.String("min-queued", "", "only sessions with at least `n` queued messages")
	fs.String("sort", "", "order rows by `column`: "+strings.Join(inventory.SortKeys(), ", ")+" (default client_id; ties by client id)")
	desc := fs.Bool("desc", false, "reverse the order")
	fs.String("limit", "", fmt.Sprintf("`n` rows in the page (default %d, at most %d)", inventory.DefaultLimit, inventory.MaxLimit))
	fs.String("offset", "", "skip `n` rows before the page")
	prefix := fs.String("retained-prefix", "", "sum the retained messages at and under `topic` (\"\" for all) by the next level")
	if err := parse(fs, args); err != nil {
		return err
	}
	if (*cfgPath == "") == (*dataDir == "") {
		fs.Usage()
		return usagef("inspect: give either -c config.toml (running broker) or --data DIR (stopped broker)")
	}
	params := url.Values{}
	listing, summing := false, false
	fs.Visit(func(f *flag.Flag) {
		if p, ok := pageFlags[f.Name]; ok {
			params.Set(p, f.Value.String())
		}
		listing = listing || f.Name == "desc" || pageFlags[f.Name] != ""
		summing = summing || f.Name == "retained-prefix"
	})
	if *desc {
		params.Set("order", "desc")
	}
	q, err := inventory.ParseQuery(params)
	if err != nil {
		param, why, _ := strings.Cut(err.Error(), ": ")
		return usagef("inspect: --%s: %s", strings.ReplaceAll(param, "_", "-"), why)
	}
	if err := inventory.CheckPrefix(*prefix); summing && err != nil {
		return usagef("inspect: --retained-prefix: %v", err)
	}
	if !listing && !summing {
		return inspectAll(env, *cfgPath, *dataDir, *asJSON)
	}

	var page *inventory.Page
	var sum *inventory.Retained
	var source string
	if *cfgPath != "" {
		cfg, err := loadConfig(env, *cfgPath)
		if err != nil {
			return err
		}
		if source, err = adminBase(cfg, *cfgPath); err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if listing {
			page = new(inventory.Page)
			if err := adminGetJSON(ctx, cfg, source, "/api/sessions?"+q.Values().Encode(), page); err != nil {
				return err
			}
		}
		if summing {
			sum = new(inventory.Retained)
			if err := adminGetJSON(ctx, cfg, source, "/api/retained?prefix="+url.QueryEscape(*prefix), sum); err != nil {
				return err
			}
		}
	} else {
		inv, err := persist.InspectDir(*dataDir)
		if err != nil {
			return storeOpenError("inspect", *dataDir, err)
		}
		source = *dataDir
		if listing {
			rows := make([]inventory.Session, len(inv.Sessions))
			for i, si := range inv.Sessions {
				rows[i] = inventory.FromStore(si)
			}
			p := q.Apply(rows)
			page = &p
		}
		if summing {
			var rs inventory.RetainedSum
			for _, r := range inv.Retained {
				// A running broker's sum is a subscription to "#" or P/#: "#" matches no $ topic
				// [MQTT-4.7.2-1].
				if *prefix != "" || !strings.HasPrefix(r.Topic, "$") {
					rs.Add(r.Topic, r.PayloadBytes)
				}
			}
			r := rs.Under(*prefix)
			sum = &r
		}
	}
	if *asJSON {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		switch {
		case page != nil && sum != nil:
			return enc.Encode(map[string]any{"sessions": page, "retained": sum})
		case page != nil:
			return enc.Encode(page)
		}
		return enc.Encode(sum)
	}
	now := time.Now()
	if page != nil {
		printPage(env.Stdout, source, page, now)
	}
	if page != nil && sum != nil {
		fmt.Fprintln(env.Stdout)
	}
	if sum != nil {
		printRetainedSum(env.Stdout, source, sum)
	}
	return nil
}

// adminGetJSON decodes the answer to GET base+path into v; an API error's JSON message is in
// the error adminGet returns.
func adminGetJSON(ctx context.Context, cfg *config.Config, base, path string, v any) error {
	resp, err := adminGet(ctx, cfg, base, path)
	if err != nil {
		return fmt.Errorf("inspect: %w", err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("inspect: %s%s: %w", base, path, err)
	}
	return nil
}

// inspectAll prints the whole inventory: what inspect printed before it had filters.
func inspectAll(env *Env, cfgPath, dataDir string, asJSON bool) error {
	var inv *persist.Inventory
	var source string
	if cfgPath != "" {
		cfg, err := loadConfig(env, cfgPath)
		if err != nil {
			return err
		}
		base, err := adminBase(cfg, cfgPath)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		inv = new(persist.Inventory)
		if err := adminGetJSON(ctx, cfg, base, "/inspect", inv); err != nil {
			return err
		}
		source = base
	} else {
		var err error
		inv, err = persist.InspectDir(dataDir)
		if err != nil {
			return storeOpenError("inspect", dataDir, err)
		}
		source = dataDir
	}
	if asJSON {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(inv)
	}
	printInventory(env.Stdout, source, inv, time.Now())
	return nil
}

// printPage writes a page of session rows as a table.
func printPage(w io.Writer, source string, p *inventory.Page, now time.Time) {
	if len(p.Sessions) == 0 {
		fmt.Fprintf(w, "%s: no sessions from row %d on: %d match of %d\n", source, p.Offset+1, p.Total, p.All)
		return
	}
	fmt.Fprintf(w, "%s: sessions %d-%d of %d that match (%d in all)\n\n", source, p.Offset+1, p.Offset+len(p.Sessions), p.Total, p.All)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CLIENT ID\tUSER\tSTATE\tPROTOCOL\tSUBSCRIPTIONS\tQUEUED\tQUEUED BYTES\tOLDEST QUEUED\tIN FLIGHT")
	for _, s := range p.Sessions {
		state := "connected"
		if !s.Online {
			state = "offline"
			if s.LastSeen != nil {
				state += " since " + s.LastSeen.Local().Format("2006-01-02 15:04:05") + " (" + ago(now.Sub(*s.LastSeen)) + ")"
			}
		}
		user, oldest := "-", "-"
		if s.Username != "" {
			user = printable(s.Username)
		}
		if s.OldestQueued != nil {
			oldest = ago(now.Sub(*s.OldestQueued))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t%d\n", sessionName(s.ClientID), user, state, orDash(s.Protocol),
			s.Subscriptions, s.Queued, s.QueuedBytes, oldest, s.Inflight)
	}
	tw.Flush()
}

// printRetainedSum writes the retained messages under a prefix, by the next level.
func printRetainedSum(w io.Writer, source string, r *inventory.Retained) {
	where := "all topics"
	if r.Prefix != "" {
		where = printable(r.Prefix) + " and under"
	}
	fmt.Fprintf(w, "%s: retained messages on %s: %d (%s)\n", source, where, r.Count, humanBytes(float64(r.Bytes)))
	if len(r.Children) == 0 {
		return
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TOPIC\tRETAINED\tPAYLOAD BYTES\tON THE TOPIC ITSELF")
	for _, c := range r.Children {
		leaf := "no"
		if c.Leaf {
			leaf = "yes"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\n", printable(c.Topic), c.Count, c.Bytes, leaf)
	}
	tw.Flush()
}

// printInventory writes the human tables.
func printInventory(w io.Writer, source string, inv *persist.Inventory, now time.Time) {
	var queued, inflight int
	var qbytes int64
	for _, s := range inv.Sessions {
		queued += s.QueueDepth
		qbytes += s.QueueBytes
		inflight += s.Inflight
	}
	fmt.Fprintf(w, "%s: format version %d (written by %q): %d sessions, %d queued messages (%s), %d in flight, %d retained\n\n",
		source, inv.FormatVersion, inv.Writer, len(inv.Sessions), queued, humanBytes(float64(qbytes)), inflight, len(inv.Retained))

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CLIENT ID\tSTATE\tPROTOCOL\tQUEUED\tQUEUED BYTES\tOLDEST QUEUED\tIN FLIGHT\tSUBSCRIPTIONS")
	for _, s := range inv.Sessions {
		state := "connected"
		switch {
		case !s.HasRecord:
			state = "ORPHAN (no session record)"
		case !s.Connected && s.DisconnectedAt != nil:
			state = "offline since " + s.DisconnectedAt.Local().Format("2006-01-02 15:04:05") + " (" + ago(now.Sub(*s.DisconnectedAt)) + ")"
		case !s.Connected:
			state = "offline"
		}
		subs := make([]string, len(s.Subscriptions))
		for i, sub := range s.Subscriptions {
			subs[i] = fmt.Sprintf("%s (QoS %d%s)", sub.Filter, sub.QoS, subOptions(sub))
		}
		extra := ""
		if len(s.InboundQoS2) > 0 {
			extra = fmt.Sprintf("  [%d inbound QoS 2 ids awaiting PUBREL]", len(s.InboundQoS2))
		}
		if len(s.Held) > 0 {
			extra += fmt.Sprintf("  [%d held by shared subscription members: %s]", len(s.Held), heldBy(s.Held))
		}
		if s.SessionExpiry != nil {
			extra += "  [session expiry " + expiryInterval(*s.SessionExpiry) + "]"
		}
		if w := s.Will; w != nil {
			extra += fmt.Sprintf("  [will on %s (QoS %d, %d bytes", printable(w.Topic), w.QoS, w.PayloadBytes)
			if w.Retain {
				extra += ", retained"
			}
			if w.Delay > 0 {
				extra += fmt.Sprintf(", delay %ds", w.Delay)
			}
			extra += ")]"
		}
		oldest := "-"
		if s.OldestQueued != nil {
			oldest = ago(now.Sub(*s.OldestQueued))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%d\t%s%s\n", sessionName(s.ClientID), state, orDash(inventory.ProtocolName(s.ProtocolLevel)),
			s.QueueDepth, s.QueueBytes, oldest, s.Inflight, orDash(strings.Join(subs, ", ")), extra)
	}
	tw.Flush()

	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RETAINED TOPIC\tQOS\tPAYLOAD BYTES\tEXPIRES")
	for _, r := range inv.Retained {
		expires := "-"
		if r.Expires != nil {
			expires = r.Expires.Local().Format("2006-01-02 15:04:05")
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\n", printable(r.Topic), r.QoS, r.PayloadBytes, expires)
	}
	tw.Flush()

	if len(inv.Problems) > 0 {
		fmt.Fprintf(w, "\nPROBLEMS (%d; holdfast verify checks a stopped store):\n", len(inv.Problems))
		for _, p := range inv.Problems {
			fmt.Fprintln(w, "  "+p)
		}
	}
}

// heldBy lists the members holding a group's entries, each with its count, in the order of
// their first entry.
func heldBy(held []persist.HeldInfo) string {
	var holders []string
	count := make(map[string]int)
	for _, h := range held {
		if count[h.Holder] == 0 {
			holders = append(holders, h.Holder)
		}
		count[h.Holder]++
	}
	for i, h := range holders {
		holders[i] = fmt.Sprintf("%s (%d)", printable(h), count[h])
	}
	return strings.Join(holders, ", ")
}

// subOptions lists a subscription's MQTT 5 options, each after a comma.
func subOptions(s persist.SubscriptionInfo) string {
	var o string
	if s.NoLocal {
		o += ", no local"
	}
	if s.RetainAsPublished {
		o += ", retain as published"
	}
	if s.ID != 0 {
		o += fmt.Sprintf(", id %d", s.ID)
	}
	return o
}

// expiryInterval formats a Session Expiry Interval; 0xFFFFFFFF is never (§3.1.2.11.2).
func expiryInterval(s uint32) string {
	if s == 0xFFFFFFFF {
		return "never"
	}
	return fmt.Sprintf("%ds", s)
}

// printable quotes a client id or topic holding spaces or control characters, so that the
// table stays a table.
// sessionName shows a client id, or a shared subscription group's queue as its subscription.
func sessionName(id string) string {
	if inventory.KindOf(id) == inventory.KindShared {
		return printable(inventory.DisplayID(id)) + " (shared group queue)"
	}
	return printable(id)
}

func printable(s string) string {
	if s == "" || strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '"' }) {
		return strconv.Quote(s)
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// ago formats a duration for people: 42s, 5m, 3h, 2d.
func ago(d time.Duration) string {
	switch {
	case d < 0:
		return "in the future"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}
