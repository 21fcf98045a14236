//go:build !unix

package agent

import "os/exec"

// newProcessGroup does nothing where there are no process groups.
func newProcessGroup(*exec.Cmd) {}

// signalGroup kills the command's own process, the most it can do here.
func signalGroup(cmd *exec.Cmd, _ bool) error { return cmd.Process.Kill() }
