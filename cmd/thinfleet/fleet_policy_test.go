package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/thinfleet/thinfleet/services/catalog"
)

// TestFleetPolicyFile chooses the target of 20 simulated agents with the
// policy file in the updates folder: a bare version (1.0, below the
// newest 2.0) sets the target and every device runs 1.0, offered
// nothing newer; the seed system's one-line form naming 2.0 with its
// sha256 moves every device to 2.0; the same line for a new 3.0 with a
// checksum that is not 3.0's is refused, the catalog says why, the
// target stays 2.0 and nobody is offered 3.0; and the line with the seed
// system's placeholder checksum ('abc') is accepted and moves the fleet
// to 3.0.
func TestFleetPolicyFile(t *testing.T) {
	const n = 20
	r := newRig(t, rigOptions{agents: n})
	r.writePolicy("1.0\n")
	r.publish("1.0", nil)
	sum2 := r.publish("2.0", nil)
	r.waitTarget("1.0", "")
	r.waitDevices("every device on 1.0", r.onVersion("1.0", nil))
	if o := r.offeredVersion("2.0"); len(o) > 0 {
		t.Errorf("with the policy file naming 1.0, %d devices were offered 2.0", len(o))
	}

	r.writePolicy(fmt.Sprintf("'Update 2', '2.0', '%s', '/downloads/update2', 'tarxyz'\n", sum2))
	r.waitTarget("2.0", "")
	r.waitDevices("every device on 2.0", r.onVersion("2.0", nil))

	sum3 := r.publish("3.0", nil)
	wrong := strings.Repeat("0", 64)
	r.writePolicy(fmt.Sprintf("'Update 3', '3.0', '%s', '/downloads/update3', 'tarxyz'\n", wrong))
	c := r.waitTarget("2.0", "checksum")
	if !strings.Contains(c.TargetReason, "refused") || !strings.Contains(c.TargetReason, sum3) {
		t.Errorf("the refusal's reason %q names neither the refusal nor 3.0's sha256", c.TargetReason)
	}
	if o := r.offeredVersion("3.0"); len(o) > 0 {
		t.Errorf("with the policy file refused, %d devices were offered 3.0", len(o))
	}

	r.writePolicy("'Update 3', '3.0', 'abc', '/downloads/update3', 'tarxyz'\n")
	r.waitTarget("3.0", "")
	r.waitDevices("every device on 3.0", r.onVersion("3.0", nil))
}

// writePolicy replaces the policy file, written aside and renamed in as
// an operator's tool does.
func (r *rig) writePolicy(content string) {
	r.t.Helper()
	tmp := filepath.Join(r.t.TempDir(), "target")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		r.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(r.updates, catalog.PolicyFile)); err != nil {
		r.t.Fatal(err)
	}
}

// waitTarget waits until the catalog's target is version and its reason
// holds reason, and returns the catalog.
func (r *rig) waitTarget(version, reason string) catalogView {
	r.t.Helper()
	return r.waitCatalog("the target "+version, func(c catalogView) error {
		if c.Target != version || !strings.Contains(c.TargetReason, reason) {
			return fmt.Errorf("target %q (%s), want %s with %q in its reason", c.Target, c.TargetReason, version, reason)
		}
		return nil
	})
}
