# bash completion for keybroker(1).
#
# Subcommands, their options and which options take a value are read from
# keybroker's own --help, so they follow the binary that is installed. Key
# names come from the running broker's status, on the socket the command line
# names (-s PATH), else $KEYBROKER_SOCKET, else the default.

# _keybroker_opts KB [CMD]: the options of CMD (or the global ones), one a
# line, as "--name PLACEHOLDER" or "--name" (short forms as "-x PLACEHOLDER").
_keybroker_opts()
{
	"$1" ${2:+"$2"} --help 2>/dev/null | sed -n \
		-e 's/^ \{2,\}-\([a-zA-Z]\), --\([a-z][a-z-]*\)\( \([A-Z][A-Za-z.|-]*\)\)\{0,1\}  .*/-\1 \4\n--\2 \4/p' \
		-e 's/^ \{2,\}--\([a-z][a-z-]*\)\( \([A-Z][A-Za-z.|-]*\)\)\{0,1\}  .*/--\1 \3/p'
}

# _keybroker_commands KB: the subcommands keybroker --help lists.
_keybroker_commands()
{
	"$1" --help 2>/dev/null | sed -n '/^commands:/,/^$/s/^  \([a-z][a-z-]*\) .*/\1/p'
}

# _keybroker_keys KB [SOCKET ARGS...]: the key names of the running broker.
_keybroker_keys()
{
	local kb=$1
	shift
	timeout 5 "$kb" "$@" --json status 2>/dev/null |
		grep -o '{"name":"[A-Za-z0-9_-]*"' | cut -d'"' -f4
}

_keybroker()
{
	local cur prev words cword split
	_init_completion -s || return

	local kb=${words[0]} cmd="" i w arg optlines opt want
	local -a sock=() positional=()

	# the subcommand is the first word that is neither an option nor the
	# value of one; -s/--socket is remembered for the key names
	for ((i = 1; i < cword; i++)); do
		w=${words[i]}
		case $w in
		-s | --socket)
			sock=(-s "${words[i + 1]}")
			((i++))
			;;
		--socket=*) sock=(-s "${w#--socket=}") ;;
		-*)
			if [[ -n $cmd && $w != *=* ]] &&
				_keybroker_opts "$kb" "$cmd" | grep -q -- "^$w [A-Z]"; then
				((i++))
			fi
			;;
		*)
			if [[ -z $cmd ]]; then
				cmd=$w
			else
				positional+=("$w")
			fi
			;;
		esac
	done
	local helpword=help
	if [[ $cmd == help ]]; then
		cmd=""
		helpword=""
	fi

	# the value of an option
	if [[ $prev == -* ]]; then
		arg=$(_keybroker_opts "$kb" "$cmd" | sed -n "s/^$prev \([A-Z].*\)/\1/p" | head -n 1)
		if [[ -n $arg ]]; then
			case $prev in
			-k | --key)
				COMPREPLY=($(compgen -W "$(_keybroker_keys "$kb" "${sock[@]}")" -- "$cur"))
				;;
			--alg)
				COMPREPLY=($(compgen -W "RSA-OAEP RSA-OAEP-256 RSA1_5 AES-KWP A128KW A192KW A256KW AES-GCM AES-KW CKM_AES_KEY_WRAP_PAD" -- "$cur"))
				;;
			--op)
				# the choices are the help line's words after the placeholder
				want=$("$kb" "$cmd" --help 2>/dev/null | sed -n 's/^ .*--op OP *//p' | tr -d ',')
				COMPREPLY=($(compgen -W "$want" -- "$cur"))
				;;
			*)
				case $arg in
				PATH | FILE* | DIR) _filedir ;;
				esac
				;;
			esac
			return
		fi
	fi

	if [[ $cur == -* ]]; then
		optlines=$(_keybroker_opts "$kb" "$cmd")
		COMPREPLY=($(compgen -W "$(printf '%s\n' "$optlines" | cut -d' ' -f1 | grep -- '^--') ${cmd:+--help}" -- "$cur"))
		[[ ${COMPREPLY-} == *= ]] && compopt -o nospace
		return
	fi
	if [[ -z $cmd ]]; then
		COMPREPLY=($(compgen -W "$(_keybroker_commands "$kb") $helpword" -- "$cur"))
		return
	fi
	# a first argument the usage line calls KEY or [KEY] is a key name
	if ((${#positional[@]} == 0)) &&
		"$kb" "$cmd" --help 2>/dev/null | head -n 1 | grep -q "^usage: keybroker $cmd \[\{0,1\}KEY\b"; then
		COMPREPLY=($(compgen -W "$(_keybroker_keys "$kb" "${sock[@]}")" -- "$cur"))
	fi
} && complete -F _keybroker keybroker
