package fleet

import "strings"

// Platform is the "os/arch" a device reported, in the names a release's
// manifest uses (Go's and OCI's: linux/amd64, linux/arm64, linux/arm/v7),
// or "" when the device has not reported its OS and architecture. Agents
// report the kernel's name for the architecture (x86_64, aarch64,
// armv7l), which is translated here.
func Platform(os, arch string) string {
	os, arch = strings.ToLower(strings.TrimSpace(os)), strings.ToLower(strings.TrimSpace(arch))
	if os == "" || arch == "" {
		return ""
	}
	a, variant := normArch(arch)
	if variant != "" {
		return os + "/" + a + "/" + variant
	}
	return os + "/" + a
}

// normArch names an architecture as Go does, with an ARM variant where
// the name carries one.
func normArch(arch string) (string, string) {
	switch arch {
	case "x86_64", "x86-64", "x64", "amd64":
		return "amd64", ""
	case "aarch64", "arm64", "armv8", "armv8l", "aarch64_be":
		return "arm64", ""
	case "i386", "i486", "i586", "i686", "x86", "386":
		return "386", ""
	case "armv5", "armv5l", "armv5tel", "armv5tejl":
		return "arm", "v5"
	case "armv6", "armv6l":
		return "arm", "v6"
	case "armv7", "armv7l", "armhf":
		return "arm", "v7"
	case "ppc64el":
		return "ppc64le", ""
	}
	return arch, ""
}

// PlatformMatches reports whether a device on platform (as Platform
// returns it) may install a release built for platforms. A release with
// no platforms is for every device. An entry is "os", "os/arch" or
// "os/arch/variant", compared without regard to case, with the
// architecture's other names allowed (linux/x86_64 is linux/amd64); an
// entry without a variant matches every variant of its architecture.
func PlatformMatches(platforms []string, platform string) bool {
	if len(platforms) == 0 {
		return true
	}
	if platform == "" {
		return false
	}
	have := strings.Split(platform, "/")
	for _, p := range platforms {
		want := strings.Split(strings.ToLower(strings.TrimSpace(p)), "/")
		if len(want) >= 2 {
			a, v := normArch(want[1])
			want[1] = a
			if v != "" && len(want) == 2 {
				want = append(want, v)
			}
		}
		if len(want) > 3 || len(want) > len(have) {
			continue
		}
		ok := true
		for i := range want {
			if want[i] != have[i] && want[i] != "*" {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}
