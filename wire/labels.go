package wire

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
)

// Labels are key=value pairs an agent reports about its machine
// (--label site=berlin), sent in HWReport. The rules below are the only
// ones: the server's tags and selectors (package fleet) use them too.
//
// A key is 1 to 63 characters of [A-Za-z0-9._-] starting with a letter or
// digit; a value is empty or the same; there are at most MaxLabels.
const (
	MaxLabels      = 32
	MaxLabelLength = 63
)

var labelPart = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// ValidateLabel reports whether key=value is a valid label.
func ValidateLabel(key, value string) error {
	if len(key) > MaxLabelLength || !labelPart.MatchString(key) {
		return fmt.Errorf("label key %q: want 1 to %d characters of A-Z a-z 0-9 . _ - starting with a letter or digit", truncate(key, 80), MaxLabelLength)
	}
	if value != "" && (len(value) > MaxLabelLength || !labelPart.MatchString(value)) {
		return fmt.Errorf("label %s value %q: want at most %d characters of A-Z a-z 0-9 . _ - starting with a letter or digit", key, truncate(value, 80), MaxLabelLength)
	}
	return nil
}

// ValidateLabels reports whether every label is valid and there are at
// most MaxLabels.
func ValidateLabels(labels map[string]string) error {
	if len(labels) > MaxLabels {
		return fmt.Errorf("labels: %d, at most %d", len(labels), MaxLabels)
	}
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		errs = append(errs, ValidateLabel(k, labels[k]))
	}
	return errors.Join(errs...)
}

// ParseLabel parses "key=value" (or "key", an empty value).
func ParseLabel(s string) (key, value string, err error) {
	key, value, _ = strings.Cut(strings.TrimSpace(s), "=")
	key, value = strings.TrimSpace(key), strings.TrimSpace(value)
	return key, value, ValidateLabel(key, value)
}

// ParseLabels adds the labels of s, "k1=v1,k2=v2", to into. Empty parts
// are skipped; a key given twice with different values is an error.
func ParseLabels(s string, into map[string]string) error {
	for part := range strings.SplitSeq(s, ",") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		k, v, err := ParseLabel(part)
		if err != nil {
			return err
		}
		if old, ok := into[k]; ok && old != v {
			return fmt.Errorf("label %s given twice: %s=%s and %s=%s", k, k, old, k, v)
		}
		into[k] = v
	}
	return ValidateLabels(into)
}
