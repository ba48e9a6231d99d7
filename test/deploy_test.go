package test

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/mqtttest"
)

// Every metric deploy/prometheus-alerts.yml and deploy/grafana-dashboard.json name exists on a
// live broker's /metrics (with a bridge and a shared group, whose metrics appear only then): a
// renamed metric must not leave an alert that can never fire or an empty panel.
func TestDeployAlertRulesNameExistingMetrics(t *testing.T) {
	var named []string
	for _, f := range []string{"../deploy/prometheus-alerts.yml", "../deploy/grafana-dashboard.json"} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		names := regexp.MustCompile(`holdfast_[a-z0-9_]+`).FindAllString(string(data), -1)
		if len(names) < 5 {
			t.Fatalf("%s names %d metrics: %v", f, len(names), names)
		}
		named = append(named, names...)
	}
	b := StartBroker(t, BrokerConfig{Extra: opsAdminExtra("0s") + `
[[bridge]]
name = "nowhere"
address = "127.0.0.1:1"
  [[bridge.topic]]
  pattern = "x/#"
`})
	c := mqtttest.Dial(t, b.Addr)
	c.MustConnect("deploy-member", true)
	c.Subscribe(1, 1, "$share/g/x/#")
	scraped := opsScrape(t, "http://"+opsAdminAddr(t, b))
	families := map[string]bool{}
	for k := range scraped {
		name, _, _ := strings.Cut(k, "{")
		families[name] = true
	}
	if scraped["holdfast_ready"] != 1 {
		t.Errorf("holdfast_ready = %v on a serving broker, want 1", scraped["holdfast_ready"])
	}
	for _, m := range named {
		if !families[m] {
			t.Errorf("deploy/ names %s, which /metrics does not have", m)
		}
	}
}
