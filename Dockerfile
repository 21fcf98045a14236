# The thinfleet image: the server, each of its parts and the agent, in one
# image FROM scratch. Nothing is pulled:
# "go tool -modfile=tools/go.mod task image" builds the static binaries on
# this machine into bin/image and builds this file there (see Taskfile.yml).
#
#   docker run -p 8080:8080 -p 4222:4222 -v thinfleet-data:/data thinfleet   # the single-process server
#   docker compose up                                                        # one container a part
FROM scratch
# Root-owned: the binaries, /etc/passwd and /etc/group, /tmp (mode 1777),
# and /bin/sh (a static busybox, when the build machine has one) for the
# agent's install commands.
COPY root/ /
# Owned by the thinfleet user: the folders named volumes are created from.
COPY --chown=10001:10001 owned/ /
USER 10001:10001
ENV HOME=/state
EXPOSE 4222 8080 9090
ENTRYPOINT ["/thinfleet"]
CMD ["server", "--data", "/data", "--updates", "/updates"]
