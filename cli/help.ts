/**
 * Help texts of the `simple-ipc` command: the program, the commands for people, and the Git
 * test-tool commands (whose own `-h` output stays Git's usage).
 */

/** The program's help: `simple-ipc --help`. */
export const PROGRAM_HELP = `simple-ipc: Git's Simple-IPC from the command line

Usage: simple-ipc <command> [options]

Commands:
  status PATH             is a server listening at PATH? (exit 0 only if so)
  call PATH [MESSAGE]     send MESSAGE (or standard input), write the raw response
  serve PATH --exec CMD   a daemon in one line: each request runs CMD
  stop PATH               stop the server at PATH (sends 'quit'; waits until it is gone)
  socket-dir              print a directory for your sockets that only you can reach
  help [COMMAND]          show the help of a command

Git test-tool commands (a drop-in for 'test-tool simple-ipc'):
  is-active     --name=PATH                  exit 0 if a server listens
  run-daemon    --name=PATH [--threads=N]    serve the test daemon in the foreground
  start-daemon  --name=PATH [--threads=N] [--max-wait=S]
  stop-daemon   --name=PATH [--max-wait=S]
  send          --name=PATH [--token=WORD]   send WORD, print the answer
  sendbytes     --name=PATH [--bytecount=N] [--byte=C]
  multiple      --name=PATH [--threads=N] [--bytecount=N] [--batchsize=N]
  SUPPORTS_SIMPLE_IPC                        exit 0

Options:
  --help        show this help
  --version     show the version

Examples:
  sock="$(simple-ipc socket-dir)/upper.sock"        # never a fixed name in /tmp
  simple-ipc serve "$sock" --exec 'tr a-z A-Z' &
  simple-ipc call --wait "$sock" hello              # prints HELLO
  simple-ipc status "$sock"                         # prints listening
  simple-ipc stop "$sock"                           # stops it gracefully

Run 'simple-ipc help COMMAND' for the options and examples of a command.
`;

/** Help of the commands for people, by name. */
export const PEOPLE_HELP = {
  status: `usage: simple-ipc status [--json] PATH

Prints what is at PATH, in Git's words:
  listening       a server accepted a connection
  not-listening   nothing there, a dead socket, or a server too busy to accept
  invalid-path    PATH can never be a socket (a regular file, a directory, ...)
  path-not-found  the socket vanished while it was being probed
  other-error     anything else (permissions, ...)
The probe connects and hangs up without sending anything; servers take that quietly.

Options:
  --json          print {"path": PATH, "state": STATE} instead
  -h, --help      show this help

Exit status: 0 when listening, 1 otherwise, 129 on a usage error.

Examples:
  simple-ipc status "$(simple-ipc socket-dir)/app.sock"
  simple-ipc status ./app.sock >/dev/null && echo up
  simple-ipc status --json ./app.sock
`,
  call: `usage: simple-ipc call [--wait] [--timeout=MS] PATH [MESSAGE | -]

Sends one request to the server at PATH and writes its response to standard output as raw
bytes, nothing added, except on a terminal, where a response that does not end with a
newline gets one. The request is MESSAGE (sent as UTF-8), or standard input when MESSAGE is
absent or '-' (any bytes, any size, streamed).

Options:
  --wait          wait for a server that is starting (up to --timeout, else 10 s); on a
                  terminal, says so on standard error
  --timeout=MS    give up if the call has not finished after MS milliseconds
  -h, --help      show this help

Exit status: 0 when the whole response arrived; 1 when no server answers, the response
ended early (the server's handler failed, or the server stopped), or the time ran out;
standard output then holds what had arrived. 129 on a usage error.

Examples:
  simple-ipc call "$(simple-ipc socket-dir)/app.sock" ping
  simple-ipc call ./app.sock < request.bin > response.bin
  echo '{"name": "x"}' | simple-ipc call --wait --timeout=5000 ./app.sock
`,
  serve: `usage: simple-ipc serve PATH --exec=COMMAND [--threads=N] [--idle-timeout=SECONDS]
                        [--mode=OCTAL] [--detach [--log=FILE]] [--quiet]

Serves requests at PATH. Each request runs COMMAND through the shell with the request on
its standard input; its standard output streams back as the response while it is produced.
When COMMAND exits with status 0 the response ends normally; otherwise the connection is
closed without ending the message, so the client sees an error ('simple-ipc call' exits 1).
COMMAND's standard error goes to the server's.

The server never takes over a PATH where another server answers, and never removes a file
that is not a socket. It stops gracefully on 'simple-ipc stop PATH' (the request 'quit',
as Git's test daemon answers it: that request alone never reaches COMMAND), on SIGINT or
SIGTERM: no new connections, waiting requests dropped, running commands finished, socket
removed. A second signal cuts the running commands off.

Options:
  --exec=COMMAND          the command run for each request (required)
  --threads=N             requests handled at once (default 8)
  --idle-timeout=SECONDS  stop after SECONDS without a connection (default: never)
  --mode=OCTAL            socket permissions (default 600: only you can connect)
  --detach                run in the background, detached from the terminal; return
                          once it listens
  --log=FILE              with --detach: append the server's output to FILE
                          (default: discarded)
  --quiet                 print nothing but errors
  -h, --help              show this help

Exit status: 0 after a stop ('quit', signal, idle timeout); 1 when the server cannot start
or its socket was taken away; 129 on a usage error.

Examples:
  dir=$(simple-ipc socket-dir)      # yours alone: not a fixed name in /tmp (docs/security.md)
  simple-ipc serve "$dir/upper.sock" --exec 'tr a-z A-Z'
  simple-ipc serve "$dir/echo.sock" --exec cat --idle-timeout=600 --detach --log="$dir/echo.log"
  simple-ipc serve ./names.sock --exec 'jq -r .name' --threads=2 --mode=660
  simple-ipc stop "$dir/echo.sock"
`,
  stop: `usage: simple-ipc stop [--timeout=MS] PATH

Stops the server at PATH: sends it the request 'quit' and waits until nothing listens
there. 'simple-ipc serve' and Git's test daemon ('run-daemon') stop on it, after finishing
the requests they are running; a server of your own stops if its handler returns QUIT for
'quit'. Any other server is stopped with its own means (SIGTERM to its pid).

Options:
  --timeout=MS    give up after MS milliseconds (default 10000)
  -h, --help      show this help

Exit status: 0 once the server is gone; 1 when no server listens at PATH or it still
listens after the timeout; 129 on a usage error.

Examples:
  simple-ipc stop "$(simple-ipc socket-dir)/app.sock"
  simple-ipc stop --timeout=60000 ./app.sock
`,
  'socket-dir': `usage: simple-ipc socket-dir

Prints a directory for your sockets that no other user can reach, creating it if needed:
$XDG_RUNTIME_DIR when it is set (it must be yours, mode 700), else simple-ipc-UID in the
temporary directory (made with mode 700; one made by another user first is refused). A
socket with a fixed name in a shared directory such as /tmp can be taken first by another
user, who then receives your requests. On Windows it prints your LOCALAPPDATA, which only
keeps pipe names apart (see docs/security.md).

Options:
  -h, --help      show this help

Exit status: 0 with the directory printed; 1 when it is not safe (the message says why and
what to do); 129 on a usage error.

Examples:
  simple-ipc serve "$(simple-ipc socket-dir)/app.sock" --exec cat
  simple-ipc call "$(simple-ipc socket-dir)/app.sock" hello
`,
} as const;

/** The commands for people. */
export type PeopleCommand = keyof typeof PEOPLE_HELP;

const TEST_TOOL_NOTE = `Options are Git's ('--opt=value' or '--opt value'); 'simple-ipc COMMAND -h' prints
Git's usage. Failures print 'error: ...' and exit 1; usage errors exit 129.`;

/** Help of the Git test-tool commands, by name (shown by `simple-ipc help COMMAND`). */
export const TEST_TOOL_HELP: Readonly<Record<string, string>> = {
  'is-active': `usage: simple-ipc is-active --name=PATH

Exits 0 if a server listens at PATH (default 'ipc-test'); otherwise prints why and exits 1.
${TEST_TOOL_NOTE}

Example:
  simple-ipc is-active --name=./t.sock && echo up
`,
  'run-daemon': `usage: simple-ipc run-daemon --name=PATH [--threads=N]

Serves Git's test daemon in the foreground (ping -> pong, big, chunk, slow, sendbytes,
quit), with N concurrent handlers (default 5). Stops on 'quit', SIGINT or SIGTERM.
${TEST_TOOL_NOTE}

Example:
  simple-ipc run-daemon --name=./t.sock --threads=8
`,
  'start-daemon': `usage: simple-ipc start-daemon --name=PATH [--threads=N] [--max-wait=SECONDS]

Starts run-daemon in the background and waits up to SECONDS (default 60) until it listens.
${TEST_TOOL_NOTE}

Example:
  simple-ipc start-daemon --name=./t.sock --max-wait=10
`,
  'stop-daemon': `usage: simple-ipc stop-daemon --name=PATH [--max-wait=SECONDS]

Sends 'quit' and waits up to SECONDS (default 60) until nothing listens at PATH.
${TEST_TOOL_NOTE}

Example:
  simple-ipc stop-daemon --name=./t.sock
`,
  send: `usage: simple-ipc send --name=PATH [--token=WORD]

Sends WORD (default '(no-command)') and prints the answer and a newline.
${TEST_TOOL_NOTE}

Example:
  simple-ipc send --name=./t.sock --token=ping      # prints pong
`,
  sendbytes: `usage: simple-ipc sendbytes --name=PATH [--bytecount=N] [--byte=C]

Sends 'sendbytes ' and N copies of C (default 1024 'x') and prints 'sent:...' with the answer.
A progress line appears on standard error when it is a terminal.
${TEST_TOOL_NOTE}

Example:
  simple-ipc sendbytes --name=./t.sock --bytecount=1000000 --byte=z
`,
  multiple: `usage: simple-ipc multiple --name=PATH [--threads=N] [--bytecount=N] [--batchsize=N]

Runs N concurrent senders (default 5), each sending BATCHSIZE (default 10) sendbytes
requests on new connections, and prints a summary. Exits 1 if any request failed.
${TEST_TOOL_NOTE}

Example:
  simple-ipc multiple --name=./t.sock --threads=20 --batchsize=50
`,
  SUPPORTS_SIMPLE_IPC: `usage: simple-ipc SUPPORTS_SIMPLE_IPC

Exits 0: this platform supports Simple-IPC (Git's test suite asks this first).
`,
};

/** The help of the help command: `simple-ipc help help` (or `help --help`). */
export const HELP_HELP = `usage: simple-ipc help [COMMAND]

Prints the help of COMMAND: what it does, its options, its exit status and examples. Without
COMMAND, prints the program's help, which lists every command (as 'simple-ipc --help').

Options:
  -h, --help      show this help

Exit status: 0 with the help printed; 129 when COMMAND is not a command.

Examples:
  simple-ipc help serve
  simple-ipc help sendbytes
`;

/** The help of `command`, or undefined for an unknown command. */
export function helpFor(command: string): string | undefined {
  if (command === 'help') return HELP_HELP;
  if (Object.hasOwn(PEOPLE_HELP, command)) return PEOPLE_HELP[command as PeopleCommand];
  return TEST_TOOL_HELP[command];
}
