# Shared by tests/vm/run and tests/vm/cluster: builds the guest's inputs
# (kernel, initramfs) and boots guests. Sourced, not executed.

vm_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_dir=$(cd "$vm_dir/../.." && pwd)
vm_cache=${IBNBD_VM_CACHE:-/var/cache/ibnbd-vm}

# Modules the initramfs loads (with their dependencies, in order), and
# their parameters: first those the guest's setup needs, then the rest,
# loaded in the background while the setup goes on. COMMAND starts after
# both. Anything else is modprobed on demand from the host root.
vm_modules_boot=(9pnet_virtio 9p overlay virtio_net crc32_generic rdma_rxe
                 rdma_ucm ib_uverbs ublk_drv null_blk)
vm_modules_extra=(nvme-rdma nvmet-rdma nbd loop)
declare -A vm_module_params=([null_blk]="nr_devices=0")
# Host binaries the initramfs carries (with their libraries).
vm_initramfs_bins=(rdma)

vm_die() { echo "vm: $*" >&2; exit 2; }
vm_log() { [ -n "${vm_quiet:-}" ] || echo "vm: $*" >&2; }

vm_now() { date +%s.%N; }
vm_elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

# vm_kernel: sets vm_release, vm_kroot. Uses the cached kernel if the
# backports one is already there; fetches otherwise.
vm_kernel() {
	if [ -e "$vm_cache/kernel/current/.complete" ] && [ -z "${IBNBD_VM_REFRESH:-}" ]; then
		vm_release=$(readlink "$vm_cache/kernel/current")
	else
		vm_release=$("$vm_dir/fetch-kernel") || vm_die "no guest kernel (tests/vm/fetch-kernel failed)"
	fi
	vm_kroot=$vm_cache/kernel/$vm_release
	vm_vmlinuz=$vm_kroot/boot/vmlinux
	vm_moddir=$vm_kroot/lib/modules/$vm_release
	[ -f "$vm_vmlinuz" ] || vm_die "missing $vm_vmlinuz"
}

# vm_initramfs: sets vm_initrd. Rebuilt only when one of its inputs (the
# init script, busybox, the kernel, the module list, the binaries) changes.
# Uncompressed: decompressing in an emulated CPU costs more than it saves.
vm_initramfs() {
	local bb=/bin/busybox key tmp m f bins=() lib
	[ -x "$bb" ] || vm_die "busybox-static is not installed (scripts/install-deps)"
	for f in "${vm_initramfs_bins[@]}"; do
		bins+=("$(command -v "$f")") || vm_die "$f is not installed (scripts/install-deps)"
	done
	key=$( { cat "$vm_dir/initramfs-init"; sha256sum "$bb" "${bins[@]}"; echo "$vm_release";
	         echo "${vm_modules_boot[*]}/${vm_modules_extra[*]}"; declare -p vm_module_params; } |
	      sha256sum | cut -c1-16)
	vm_initrd=$vm_cache/initramfs-$key.cpio
	[ -s "$vm_initrd" ] && return 0
	vm_log "building initramfs $vm_initrd"
	tmp=$(mktemp -d)
	mkdir -p "$tmp"/{bin,dev,proc,sys,modules}
	cp "$bb" "$tmp/bin/busybox"
	cp "$vm_dir/initramfs-init" "$tmp/init"
	chmod +x "$tmp/init"
	vm_module_list "${vm_modules_boot[@]}" > "$tmp/modules.boot"
	vm_module_list "${vm_modules_extra[@]}" | grep -vxFf "$tmp/modules.boot" > "$tmp/modules.extra"
	for f in boot extra; do
		while read -r m; do
			objcopy --strip-debug "$(vm_module_path "$m")" "$tmp/modules/$m.ko"
			echo "$m ${vm_module_params[$m]:-}"
		done < "$tmp/modules.$f" > "$tmp/modules.$f.order"
		mv "$tmp/modules.$f.order" "$tmp/modules.$f"
	done
	for f in "${bins[@]}"; do
		cp "$f" "$tmp/bin/"
		for lib in $(ldd "$f" | grep -o '/[^ ]*'); do
			mkdir -p "$tmp$(dirname "$lib")"
			cp -L "$lib" "$tmp$lib"
		done
	done
	( cd "$tmp" && find . | cpio -o -H newc --quiet ) > "$vm_initrd.tmp" &&
		mv "$vm_initrd.tmp" "$vm_initrd"
	find "$vm_cache" -maxdepth 1 -name "initramfs-*" ! -name "${vm_initrd##*/}" -mmin +60 -delete
	rm -rf "$tmp"
}

# vm_module_list MODULE...: the modules to load for MODULEs, dependencies
# first, each once. (Signatures are stripped when copied: checking one costs
# ~0.1 s in an emulated CPU; the kernel notes the taint once.)
vm_module_list() {
	local m
	for m in "$@"; do
		modprobe -d "$vm_kroot" -S "$vm_release" --show-depends "$m" ||
			vm_die "module $m not found for $vm_release"
	done | awk '$1 == "insmod" { n = split($2, p, "/"); sub(/\.ko$/, "", p[n]); if (!seen[p[n]]++) print p[n] }'
}
vm_module_path() {
	modprobe -d "$vm_kroot" -S "$vm_release" --show-depends "$1" | awk 'END { print $2 }'
}

# vm_accel MODE -> prints the qemu accelerator arguments. tcg is the
# default; kvm only when asked, or with "auto" when a probe boot proved it
# works on this host kernel (the result is cached).
vm_accel() {
	local mode=$1 probe
	case "$mode" in
	tcg) echo "-accel tcg,thread=multi -cpu max" ;;
	kvm) echo "-accel kvm -cpu host" ;;
	auto)
		probe=$vm_cache/kvm-probe-$(uname -r)
		if [ ! -e "$probe" ]; then
			if [ -w /dev/kvm ] && timeout 20 qemu-system-x86_64 -accel kvm -cpu host \
				-m 256 -nographic -no-reboot -kernel "$vm_vmlinuz" -initrd "$vm_initrd" \
				-append "console=ttyS0 panic=-1 ibnbd.probe=1" </dev/null 2>&1 |
				grep -q IBNBD-PROBE-OK; then
				echo kvm > "$probe"
			else
				echo tcg > "$probe"
			fi
		fi
		vm_accel "$(cat "$probe")" ;;
	*) vm_die "unknown accelerator '$mode' (tcg, kvm or auto)" ;;
	esac
}

# vm_boot DIR NAME IP NETDEV_ARGS MODE [MACHINE_ID]
# A second NIC (eth1, with rxe1 on it) when vm_ip2 and vm_netdev2 are set.
# Starts one guest in the background (qemu's pid in DIR/qemu.pid), its
# console in DIR/console.log, its monitor on DIR/monitor.sock. The guest is
# killed after $vm_timeout seconds whatever happens to us, and when the
# process that started it dies (pdeathsig) unless vm_detach is set.
vm_boot() {
	local dir=$1 name=$2 ip=$3 netdev=$4 mode=$5 machine_id=${6:-} shares="" opts=() i=0 s
	mkdir -p "$dir/jobs"
	rm -f "$dir/ready" "$dir/stop" "$dir/dmesg"
	for s in "${vm_shares[@]}"; do
		opts+=($(vm_9p "$s" "share$i"))
		shares+="${shares:+,}share$i:$s"
		i=$((i + 1))
	done
	local cmdline="console=ttyS0 panic=-1 ${IBNBD_VM_QUIET-quiet} loglevel=5 mitigations=off"
	cmdline+=" random.trust_cpu=on no_timer_check tsc=reliable lpj=4000000"
	cmdline+=" ibnbd.agent=$vm_dir/guest-agent ibnbd.repo=$repo_dir ibnbd.scratch=$dir ibnbd.mode=$mode"
	cmdline+=" ibnbd.ip=$ip ibnbd.host=$name ibnbd.moddir=$vm_moddir"
	[ -n "$shares" ] && cmdline+=" ibnbd.shares=$shares"
	[ -n "$machine_id" ] && cmdline+=" ibnbd.machine_id=$machine_id"
	# systemd as PID 1: only what the guest's target needs, and no
	# renaming of eth0/eth1 (rxe is bound to them before systemd starts).
	[ "${vm_init:-}" = systemd ] &&
		cmdline+=" ibnbd.init=systemd systemd.unit=ibnbd-vm.target net.ifnames=0 systemd.show_status=0"
	local nic2=()
	if [ -n "${vm_ip2:-}" ]; then
		cmdline+=" ibnbd.ip2=$vm_ip2"
		nic2=(-netdev "$vm_netdev2" -device "virtio-net-pci,netdev=n1,mac=$(vm_mac "$name-2")")
	fi

	# timeout(1) is the hard limit whatever happens to us; pdeathsig on
	# both makes the guest die with the process that started it (unless
	# detached, as tests/vm/cluster's guests are).
	local launcher=(timeout -s KILL "$vm_timeout" setpriv --pdeathsig KILL)
	[ -n "${vm_detach:-}" ] || launcher=(setpriv --pdeathsig KILL "${launcher[@]}")
	# shellcheck disable=SC2086
	"${launcher[@]}" qemu-system-x86_64 $(vm_accel "$vm_accel_mode") \
		-name "ibnbd-$name" -machine q35 -smp "$vm_smp" -m "$vm_mem" \
		-display none -no-reboot -nodefaults -bios qboot.rom \
		-serial "file:$dir/console.log" \
		-monitor "unix:$dir/monitor.sock,server=on,wait=off" \
		-kernel "$vm_vmlinuz" -initrd "$vm_initrd" -append "$cmdline" \
		$(vm_9p / hostroot readonly=on) $(vm_9p "$dir" scratch) "${opts[@]}" \
		-netdev "$netdev" -device "virtio-net-pci,netdev=n0,mac=$(vm_mac "$name")" "${nic2[@]}" \
		</dev/null >"$dir/qemu.log" 2>&1 &
	echo $! > "$dir/qemu.pid"
}

# vm_9p PATH TAG [OPTS]: qemu arguments sharing PATH with the guest as TAG.
vm_9p() {
	echo "-fsdev local,id=fs-$2,path=$1,security_model=none,multidevs=remap${3:+,$3}"
	echo "-device virtio-9p-pci,fsdev=fs-$2,mount_tag=$2"
}

vm_mac() { printf '52:54:00:1b:db:%02x\n' "$(( $(cksum <<<"$1" | cut -d' ' -f1) % 256 ))"; }

vm_alive() { [ -e "$1/qemu.pid" ] && kill -0 "$(cat "$1/qemu.pid")" 2>/dev/null; }

# vm_kill DIR: the guest is gone when this returns.
vm_kill() {
	local pid
	[ -e "$1/qemu.pid" ] || return 0
	pid=$(cat "$1/qemu.pid")
	# timeout(1) is the process we know; its child is qemu.
	pkill -KILL -P "$pid" 2>/dev/null
	kill -KILL "$pid" 2>/dev/null
	while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
	rm -f "$1/qemu.pid"
}

# vm_wait_ready DIR TIMEOUT: 0 once the guest's stack is up; 3 if the
# guest died during boot (before any COMMAND ran), 4 if it is not up after
# TIMEOUT s (left running), 1 for anything else.
vm_wait_ready() {
	local dir=$1 deadline
	deadline=$(( $(date +%s) + $2 ))
	while [ ! -s "$dir/ready" ]; do
		if ! vm_alive "$dir"; then
			echo "vm: guest died during boot" >&2
			vm_dump_console "$dir"
			return 3
		fi
		if [ "$(date +%s)" -ge "$deadline" ]; then
			echo "vm: guest not ready after $2 s" >&2
			vm_dump_console "$dir"
			return 4
		fi
		sleep 0.02
	done
	if [ "$(cat "$dir/ready")" != ok ]; then
		echo "vm: guest setup failed: $(cat "$dir/ready")" >&2
		return 1
	fi
}

vm_dump_console() {
	echo "vm: ---- last lines of the guest console ($1/console.log) ----" >&2
	tail -n 40 "$1/console.log" >&2 2>/dev/null
	[ -s "$1/qemu.log" ] && { echo "vm: ---- qemu ----" >&2; cat "$1/qemu.log" >&2; }
}

# vm_kernel_problems DIR: prints the lines of the guest's kernel log that
# mean a kernel bug (BUG, WARNING, oops, hung task, ...); empty if none.
vm_kernel_problems() {
	cat "$1/dmesg" "$1/console.log" 2>/dev/null | vm_kernel_problems_filter
}
# One exception: qemu's TCG now and then delivers a single-step debug trap
# in kernel mode (DR_STEP with no kprobe or kgdb), which the kernel reports
# once with a WARNING in exc_debug_kernel; it is the emulator's, and seen
# once after a guest's reboot in a two-host test.
vm_kernel_problems_filter() {
	grep -E 'BUG:|WARNING:|Oops|general protection fault|Kernel panic|blocked for more than|UBSAN:|KASAN:|kernel BUG|soft lockup|hard LOCKUP|rcu_sched self-detected|rcu: INFO' |
		grep -vE 'WARNING: CPU: [0-9]+ PID: [0-9]+ at arch/x86/kernel/traps.c:[0-9]+ exc_debug_kernel' |
		sed 's/^[0-9]*,[0-9]*,[0-9]*,[^;]*;//' | sort -u
}

# vm_emulation_crash CONSOLE...: true, printing the oops' first line, if
# the first kernel oops in these console logs is one the emulated machine
# causes, not anything a test does: an int3 trap in kernel code (TCG running
# code that another vCPU is patching: a static key flipped; seen once in
# inet_ehashfn at a guest's first TCP connection), or a fault with
# rdma_rxe, the soft-RoCE driver standing in for an HCA, in its trace (seen
# once: slab corruption found in its receive path). A first oops of any
# other kind, in any of the files, is not.
vm_emulation_crash() {
	local f oops
	for f in "$@"; do
		[ -e "$f" ] || continue
		oops=$(awk '/Oops|Kernel panic|BUG:|general protection fault/ && !n { n = NR }
			n && NR <= n + 60' "$f")
		[ -n "$oops" ] || continue
		if printf '%s\n' "$oops" | head -n 1 | grep -q 'Oops: int3' ||
			printf '%s\n' "$oops" | grep -q '\[rdma_rxe\]'; then
			printf '%s\n' "$oops" | head -n 1 | sed 's/^\[ *[0-9.]*\] //'
			return 0
		fi
		return 1
	done
	return 1
}

# vm_void_run WHY FILE...: prints FILE... (a run's output) as "# run 1:"
# comments, so a TAP reader does not count them, and says on stdout and
# stderr that the run does not count for WHY (vm_emulation_crash's line).
vm_void_run() {
	local msg="run 1 does not count: a guest's kernel crashed for the emulation's sake ($1); running it once more"
	shift
	cat "$@" | sed 's/^/# run 1: /'
	echo "# $msg"
	echo "vm: $msg" >&2
}

vm_quote() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

# vm_job_script FILE CWD NAME=VALUE... -- COMMAND...: writes the (POSIX sh)
# script a guest runs for one job.
vm_job_script() {
	local file=$1 cwd=$2 a
	shift 2
	{
		printf 'cd %s || exit 2\n' "$(vm_quote "$cwd")"
		while [ $# -gt 0 ] && [ "$1" != -- ]; do
			printf 'export %s=%s\n' "${1%%=*}" "$(vm_quote "${1#*=}")"
			shift
		done
		shift
		printf 'exec'
		for a in "$@"; do printf ' %s' "$(vm_quote "$a")"; done
		echo
	} > "$file.tmp"
	mv "$file.tmp" "$file"
}

# vm_env: the environment a job inherits from the host (IBNBD_* and a few
# build variables), as NAME=VALUE words.
vm_env() {
	local v
	while IFS= read -r v; do
		printf '%s\n' "$v=${!v}"
	done < <(compgen -e | grep -E '^(IBNBD_|MESON_|CI$|ASAN_OPTIONS$|UBSAN_OPTIONS$|LSAN_OPTIONS$)' |
		grep -vE '^IBNBD_VM_(ADDR2?|HOST|RDMA_DEV2?|NETDEV2?|SERVER_ADDR|CLIENT_ADDR)$')
}

# vm_follow FILE PID: copies FILE to stdout as it grows, until FILE's .rc
# appears or PID (the guest) exits; every byte is copied exactly once.
vm_follow() {
	local out=$1 rc=${1%.out}.rc pid=$2 done=0 size last=
	while :; do
		[ -e "$rc" ] || ! kill -0 "$pid" 2>/dev/null && last=1
		size=$(stat -c %s "$out" 2>/dev/null || echo 0)
		if [ "$size" -gt "$done" ]; then
			tail -c +$((done + 1)) "$out" | head -c $((size - done))
			done=$size
		fi
		[ -n "$last" ] && return 0
		sleep 0.05
	done
}
