# Install fsvc as distributions package things:
#
#   make && sudo make install              # PREFIX=/usr/local, helper in /sbin
#   make install DESTDIR=/tmp/pkg PREFIX=/usr
#   sudo make install SETUID=1             # allow user mounts (see the policy)
#   sudo make uninstall                    # same variables as the install
#
# The helper goes to $(SBINDIR)/mount.service (mount(8) looks for helpers in
# /sbin only) with the umount(8) helper link umount.fuse.fsvc beside it, and
# fsck.service.ext4 (ext3, ext2) links to e2fsck, so that fstab's pass number
# works for service.* lines (fsck(8) and systemd look for fsck.TYPE); the
# server to $(LIBEXECDIR), a path fixed into the helper at build time
# (FSVC_SERVER_PATH), beside it fsvc-mountd (the helper binary under the mount
# service's name, never setuid); the units with ExecStart pointing at them;
# the man pages, completions and an example policy.

PREFIX     ?= /usr/local
SBINDIR    ?= /sbin
LIBEXECDIR ?= $(PREFIX)/libexec/fsvc
MANDIR     ?= $(PREFIX)/share/man
UNITDIR    ?= $(PREFIX)/lib/systemd/system
SYSCONFDIR ?= /etc
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR  ?= $(PREFIX)/share/zsh/site-functions
FISHCOMPDIR ?= $(PREFIX)/share/fish/vendor_completions.d
SETUID     ?= 0
CARGO      ?= cargo
PROFILE    ?= release
CARGO_TARGET_DIR ?= target
BUILD      := $(CARGO_TARGET_DIR)/$(if $(filter dev,$(PROFILE)),debug,$(PROFILE))
DOC        := $(BUILD)/fsvc-doc
HELPER_MODE := $(if $(filter 1,$(SETUID)),4755,0755)

INSTALLED := \
	$(SBINDIR)/mount.service \
	$(SBINDIR)/umount.fuse.fsvc \
	$(SBINDIR)/fsck.service.ext4 \
	$(SBINDIR)/fsck.service.ext3 \
	$(SBINDIR)/fsck.service.ext2 \
	$(LIBEXECDIR)/fsvc-server \
	$(LIBEXECDIR)/fsvc-mountd \
	$(UNITDIR)/fsvc.socket \
	$(UNITDIR)/fsvc@.service \
	$(UNITDIR)/fsvc-mountd.socket \
	$(UNITDIR)/fsvc-mountd@.service \
	$(MANDIR)/man8/fsvc-mount.8 \
	$(MANDIR)/man8/mount.service.8 \
	$(MANDIR)/man8/fsvc-server.8 \
	$(BASHCOMPDIR)/fsvc-mount \
	$(ZSHCOMPDIR)/_fsvc-mount \
	$(FISHCOMPDIR)/fsvc-mount.fish \
	$(SYSCONFDIR)/fsvc/policy.toml.example

.PHONY: all build install uninstall

all: build

build:
	FSVC_SERVER_PATH=$(LIBEXECDIR)/fsvc-server \
	FSVC_POLICY_PATH=$(SYSCONFDIR)/fsvc/policy.toml \
	CARGO_TARGET_DIR=$(CARGO_TARGET_DIR) \
		$(CARGO) build --profile $(PROFILE) -p fsvc-helper -p fsvc-server
	$(BUILD)/fsvc-docgen $(DOC)

install: build
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(LIBEXECDIR) $(DESTDIR)$(UNITDIR) \
		$(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(ZSHCOMPDIR) \
		$(DESTDIR)$(FISHCOMPDIR) $(DESTDIR)$(SYSCONFDIR)/fsvc
	install -m $(HELPER_MODE) $(BUILD)/fsvc-mount $(DESTDIR)$(SBINDIR)/mount.service
	ln -sf mount.service $(DESTDIR)$(SBINDIR)/umount.fuse.fsvc
	for t in ext4 ext3 ext2; do ln -sf e2fsck $(DESTDIR)$(SBINDIR)/fsck.service.$$t; done
	install -m 0755 $(BUILD)/fsvc-server $(DESTDIR)$(LIBEXECDIR)/fsvc-server
	install -m 0755 $(BUILD)/fsvc-mount $(DESTDIR)$(LIBEXECDIR)/fsvc-mountd
	install -m 0644 units/fsvc.socket $(DESTDIR)$(UNITDIR)/fsvc.socket
	sed 's|^ExecStart=.*|ExecStart=$(LIBEXECDIR)/fsvc-server|' units/fsvc@.service \
		> $(DESTDIR)$(UNITDIR)/fsvc@.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/fsvc@.service
	install -m 0644 units/fsvc-mountd.socket $(DESTDIR)$(UNITDIR)/fsvc-mountd.socket
	sed 's|^ExecStart=.*|ExecStart=$(LIBEXECDIR)/fsvc-mountd|' units/fsvc-mountd@.service \
		> $(DESTDIR)$(UNITDIR)/fsvc-mountd@.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/fsvc-mountd@.service
	install -m 0644 $(DOC)/fsvc-mount.8 $(DESTDIR)$(MANDIR)/man8/fsvc-mount.8
	ln -sf fsvc-mount.8 $(DESTDIR)$(MANDIR)/man8/mount.service.8
	install -m 0644 docs/man/fsvc-server.8 $(DESTDIR)$(MANDIR)/man8/fsvc-server.8
	install -m 0644 $(DOC)/completions/fsvc-mount.bash $(DESTDIR)$(BASHCOMPDIR)/fsvc-mount
	install -m 0644 $(DOC)/completions/_fsvc-mount $(DESTDIR)$(ZSHCOMPDIR)/_fsvc-mount
	install -m 0644 $(DOC)/completions/fsvc-mount.fish $(DESTDIR)$(FISHCOMPDIR)/fsvc-mount.fish
	install -m 0644 docs/policy.toml.example $(DESTDIR)$(SYSCONFDIR)/fsvc/policy.toml.example

uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED))
	-rmdir $(DESTDIR)$(LIBEXECDIR) $(DESTDIR)$(SYSCONFDIR)/fsvc 2>/dev/null
