#!/bin/bash
# The bash completions (completions/): what a TAB offers, for words with
# no daemon running (unmap and show then offer only their options).
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
n=0 failed=0
. "$root/completions/ibnbd-client"
. "$root/completions/ibnbd-server"
offer() { # offer FUNCTION WORD...: what completing the last WORD offers
	local f=$1
	shift
	COMP_WORDS=("$@")
	COMP_CWORD=$(($# - 1))
	COMPREPLY=()
	"$f"
	echo "${COMPREPLY[*]}"
}
is() { # is DESCRIPTION EXPECTED GOT
	n=$((n + 1))
	if [ "$2" = "$3" ]; then
		echo "ok $n - $1"
	else
		echo "not ok $n - $1: expected '$2', got '$3'"
		failed=1
	fi
}
is "verbs" "map" "$(offer _ibnbd_client ibnbd-client ma)"
is "every verb" "daemon map unmap list show reload host-id gen-key --help --version" \
	"$(offer _ibnbd_client ibnbd-client '')"
is "map options" "--ro --rw" "$(offer _ibnbd_client ibnbd-client map 192.0.2.1 vol --r)"
is "map's --loss-timeout" "--loss-timeout" "$(offer _ibnbd_client ibnbd-client map h v --lo)"
is "no completion of a loss timeout" "" "$(offer _ibnbd_client ibnbd-client map h v --loss-timeout '')"
is "daemon options" "--metrics" "$(offer _ibnbd_client ibnbd-client daemon --me)"
is "no completion of a metrics address" "" "$(offer _ibnbd_client ibnbd-client daemon --metrics '')"
is "list -o formats" "table json csv" "$(offer _ibnbd_client ibnbd-client list -o '')"
is "unmap options" "--force" "$(offer _ibnbd_client ibnbd-client unmap --f)"
is "server options" "--metrics" "$(offer _ibnbd_server ibnbd-server --export a=/a --met)"
is "server debug categories" "rdma" "$(offer _ibnbd_server ibnbd-server --debug rd)"
is "the server's reload verb" "reload" "$(offer _ibnbd_server ibnbd-server re)"
is "reload's options" "--config" "$(offer _ibnbd_server ibnbd-server reload --c)"
is "the server's list verbs" "list-sessions list-exports" "$(offer _ibnbd_server ibnbd-server list)"
is "list-exports' options" "--json" "$(offer _ibnbd_server ibnbd-server list-exports --j)"
echo "1..$n"
exit $failed
