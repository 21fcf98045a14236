package main

import (
	"context"
	"fmt"
	"time"

	"github.com/thinfleet/thinfleet/internal/simfleet"
)

// group is the agents the silent and disconnect scenarios use: the first
// --group of them.
func (s *simulation) group() []*simfleet.Agent {
	all := s.f.Agents()
	return all[:min(s.o.group, len(all))]
}

// allAlive waits until the API shows every agent of g alive: a group
// measured going notAlive must start alive, or the figure would time the
// server catching up rather than noticing.
func (s *simulation) allAlive(ctx context.Context, g []*simfleet.Agent, what string) error {
	return s.waitFor(ctx, what, 250*time.Millisecond, func() (bool, string) {
		n, err := s.api.aliveOf(ctx, g)
		if err != nil {
			return false, err.Error()
		}
		return n == len(g), fmt.Sprintf("%d of %d alive", n, len(g))
	})
}

// untilNotAlive polls the API until it shows every agent of g notAlive.
func (s *simulation) untilNotAlive(ctx context.Context, g []*simfleet.Agent, since time.Time, figs *goneFigs) error {
	err := s.waitFor(ctx, fmt.Sprintf("the API showing %d agents notAlive", len(g)), 50*time.Millisecond, func() (bool, string) {
		n, err := s.api.aliveOf(ctx, g)
		if err != nil {
			return false, err.Error()
		}
		figs.Polls++
		figs.StillAlive = n
		return n == 0, fmt.Sprintf("%d still alive", n)
	})
	figs.AllNotAlive = round3(time.Since(since).Seconds())
	return err
}

// silent stops the group's heartbeats, their connections left open, and
// measures until the API shows them notAlive; then they heartbeat again
// and the API must show them alive.
func (s *simulation) silent(ctx context.Context) error {
	g := s.group()
	figs := &goneFigs{Group: len(g)}
	s.res.Silent = figs
	if err := s.allAlive(ctx, g, "the group alive before it goes silent"); err != nil {
		return err
	}
	start := time.Now()
	for _, a := range g {
		a.Silence(true)
	}
	err := s.untilNotAlive(ctx, g, start, figs)
	s.progress("silent agents notAlive", "group", len(g), "seconds", figs.AllNotAlive, "still_alive", figs.StillAlive)
	for _, a := range g {
		a.Silence(false)
	}
	if werr := s.allAlive(ctx, g, "the silent agents alive again"); werr != nil && err == nil {
		err = werr
	}
	return err
}

// disconnect closes the group's connections at once and measures until
// the API shows them notAlive.
func (s *simulation) disconnect(ctx context.Context) error {
	g := s.group()
	figs := &goneFigs{Group: len(g)}
	s.res.Disconnect = figs
	if err := s.allAlive(ctx, g, "the group alive before it disconnects"); err != nil {
		return err
	}
	start := time.Now()
	for _, a := range g {
		a.Close()
	}
	s.progress("connections closed", "group", len(g), "seconds", round3(time.Since(start).Seconds()))
	err := s.untilNotAlive(ctx, g, start, figs)
	s.progress("disconnected agents notAlive", "group", len(g), "seconds", figs.AllNotAlive, "still_alive", figs.StillAlive)
	return err
}
