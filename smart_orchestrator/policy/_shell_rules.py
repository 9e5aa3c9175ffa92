"""What the Bash resolver (`_shell`) knows about programs and shell syntax: one place to
extend when a program reads, walks, writes or runs code differently."""

from __future__ import annotations

import re

__all__ = [
    "ASSIGNERS",
    "AWKS",
    "CLAUDE_INFO_FLAGS",
    "CLAUDE_PROGRAMS",
    "CLAUDE_READ_ONLY",
    "CLAUDE_READ_ONLY_COMMANDS",
    "DYNAMIC_CODE",
    "EMBEDDED_PATH",
    "FLAT",
    "HEREDOC",
    "INTERPRETERS",
    "KEYWORDS",
    "OPERATORS",
    "PATH_FILTERS",
    "PATH_LISTERS",
    "READ_ONLY",
    "RECURSIVE_FLAGS",
    "RECURSIVE_WRITERS",
    "REDIRECT_READ",
    "REDIRECT_WRITE",
    "REVEALS",
    "SHELLS",
    "SHELL_RUNNERS",
    "STRING_LITERAL",
    "VARIABLE",
    "WRAPPERS",
]

OPERATORS = {";", "&", "&&", "||", "|", "|&", "(", ")", ";;", "{", "}", "!"}
REDIRECT_WRITE = {">", ">>", "&>", "&>>", ">|", "<>", ">&"}
REDIRECT_READ = {"<", "<&"}
KEYWORDS = {"if", "then", "else", "elif", "fi", "do", "done", "while", "until", "case", "for",
            "esac", "in", "function", "time", "select", "coproc"}
# Words that run the command after them (their own options are skipped).
WRAPPERS = {"sudo", "doas", "env", "nice", "nohup", "command", "builtin", "exec", "stdbuf",
            "timeout", "ionice", "chrt", "taskset", "setsid", "unbuffer", "caffeinate",
            "flock", "watch", "strace", "ltrace", "time", "busybox", "xvfb-run", "fakeroot"}
SHELLS = {"sh", "bash", "zsh", "dash", "ksh", "mksh", "fish", "ash", "csh", "tcsh", "yash"}
# Interpreters and the options that take inline code.
INTERPRETERS: dict[str, tuple[str, ...]] = {
    "python": ("-c",), "perl": ("-e", "-E"), "ruby": ("-e",), "node": ("-e", "--eval", "-p",
    "--print"), "nodejs": ("-e", "--eval", "-p", "--print"), "deno": ("eval",),
    "bun": ("-e", "--eval", "-p", "--print"), "php": ("-r", "-B", "-R", "-E"), "lua": ("-e",),
    "luajit": ("-e",), "tclsh": (), "rscript": ("-e",), "r": ("-e",), "osascript": ("-e",),
    "pwsh": ("-c", "-command"), "powershell": ("-c", "-command"), "julia": ("-e",),
    "groovy": ("-e",), "jshell": (), "gdb": ("-ex",), "sqlite3": (), "jq": (), "vim": ("-c",
    "+"), "vi": ("-c", "+"), "nvim": ("-c", "+"), "ex": ("-c", "+"), "emacs": ("--eval",),
    "ed": (),
}
AWKS = {"awk", "gawk", "mawk", "nawk", "busybox-awk"}
# Programs that read only the files they are given and write only to stdout.
READ_ONLY = {"cat", "tac", "head", "tail", "less", "more", "grep", "egrep", "fgrep", "rg",
             "ag", "ack", "wc", "ls", "stat", "file", "diff", "cmp", "md5sum", "sha1sum",
             "sha256sum", "sha512sum", "cksum", "b2sum", "tree", "du", "sort", "uniq", "cut",
             "tr", "nl", "od", "xxd", "hexdump", "strings", "echo", "printf", "test", "[",
             "realpath", "readlink", "basename", "dirname", "cd", "pushd", "popd", "pwd",
             "true", "false", "column", "fold", "fmt", "paste", "join", "comm", "look",
             "zcat", "bzcat", "xzcat", "zless", "view", "bat", "batcat", "type", "which"}
# Of the read-only programs, those that never descend into a folder given to them.
FLAT = {"cat", "tac", "head", "tail", "less", "more", "wc", "ls", "stat", "file", "cmp",
        "md5sum", "sha1sum", "sha256sum", "sha512sum", "cksum", "b2sum", "sort", "uniq",
        "cut", "nl", "od", "xxd", "hexdump", "strings", "echo", "printf", "test", "[",
        "realpath", "readlink", "basename", "dirname", "cd", "pushd", "popd", "pwd", "true",
        "false", "column", "fold", "fmt", "paste", "join", "comm", "type", "which", "mkdir",
        "touch", "export", "local", "declare", "readonly", "unset", "shift", "set", "shopt",
        "alias", "read", "sleep", "kill", "exit", "return", "break", "continue", "wait",
        "bat", "batcat", "zcat", "bzcat", "xzcat", "diff"}
RECURSIVE_FLAGS = re.compile(r"^-(?:-recursive|-dereference-recursive|[A-Za-z]*[rR][A-Za-z]*)$")
# Builtins that set variables from data (stdin, a format, a name held in another variable).
ASSIGNERS = {"read", "mapfile", "readarray", "getopts", "let"}
# Programs that run an argument as a shell command line.
SHELL_RUNNERS = {"watch", "su", "runuser", "script", "ssh", "parallel", "tmux", "screen",
                 "expect", "flock", "nix-shell", "entr", "env", "npx", "xargs", "find"}
# Producers whose output lines are real paths under roots this module has already resolved,
# so `find . -name '*.py' | xargs wc -l` is as safe as its `find`.
PATH_LISTERS = {"find", "fd", "fdfind", "ls", "git", "rg", "locate"}
PATH_FILTERS = {"grep", "egrep", "fgrep", "head", "tail", "sort", "uniq"}
# Programs that may change what is under a folder they are given.
RECURSIVE_WRITERS = {"rm", "cp", "mv", "rsync", "chmod", "chown", "chgrp", "shred",
                     "truncate", "tar", "unzip", "ln", "install", "setfacl", "chattr"}
# Commands that print a stored credential without naming its file.
REVEALS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("gh", "auth", "token"), "the GitHub CLI token"),
    (("gh", "auth", "status", "--show-token"), "the GitHub CLI token"),
    (("gh", "auth", "status", "-t"), "the GitHub CLI token"),
    (("git", "credential"), "git's stored credentials"),
    (("git", "credential-store"), "git's stored credentials"),
    (("git", "credential-cache"), "git's stored credentials"),
    (("aws", "configure", "get"), "AWS credentials"),
    (("aws", "configure", "export-credentials"), "AWS credentials"),
    (("aws", "configure", "list"), "AWS credentials"),
    (("gcloud", "auth", "print-access-token"), "a Google Cloud token"),
    (("gcloud", "auth", "print-identity-token"), "a Google Cloud token"),
    (("gcloud", "auth", "application-default", "print-access-token"), "a Google Cloud token"),
    (("az", "account", "get-access-token"), "an Azure token"),
    (("kubectl", "config", "view", "--raw"), "Kubernetes credentials"),
    (("docker-credential-*",), "Docker registry credentials"),
    (("security", "find-generic-password"), "the macOS keychain"),
    (("security", "find-internet-password"), "the macOS keychain"),
    (("security", "dump-keychain"), "the macOS keychain"),
    (("secret-tool", "lookup"), "the desktop keyring"),
    (("pass", "show"), "the password store"),
    (("gpg", "--export-secret-keys"), "GnuPG secret keys"),
    (("gpg", "--export-secret-subkeys"), "GnuPG secret keys"),
    (("npm", "token"), "npm tokens"),
    (("op", "read"), "a 1Password secret"),
    (("vault", "read"), "a Vault secret"),
    (("vault", "kv", "get"), "a Vault secret"),
)
# Claude Code run from a shell starts a session the plugin's checks do not see the start of
# (`claude -p "..."` with a secret, `--settings '{"disableAllHooks": true}'`, `--bare`), or
# changes what is loaded (`claude plugin disable`, `claude mcp remove`). What only prints is
# allowed.
CLAUDE_PROGRAMS = frozenset({"claude", "claude-code"})
CLAUDE_INFO_FLAGS = frozenset({"--version", "-v", "--help", "-h"})
CLAUDE_READ_ONLY = frozenset({("plugin", "list"), ("plugins", "list"), ("plugin", "details"),
                              ("plugins", "details"), ("mcp", "list"), ("mcp", "get"),
                              ("auth", "status"), ("agents", "list")})
CLAUDE_READ_ONLY_COMMANDS = frozenset({"doctor", "help"})
# Inline code that builds a path or runs code at run time: it cannot be resolved by reading.
DYNAMIC_CODE = re.compile(
    r"expanduser|environ|getenv|\bENV\b|process\.env|homedir|home\(\)|\bglob|walk|listdir|"
    r"scandir|readdir|opendir|chr\(|fromcharcode|decode|b64|base64|atob|unhexlify|fromhex|"
    r"\\x[0-9a-f]{2}|\\u[0-9a-f]{4}|\\[0-7]{3}|\bexec|\beval|compile\(|__import__|importlib|"
    r"subprocess|system\(|popen|spawn|\bjoin\b|\.join\(|reverse|\[::-1\]|\brot13|codecs|"
    r"\bpack\(|sprintf|%c|\.format\(|\bf['\"]|\$\{|\bgetline\b|\bsplit\(|replace\(|"
    r"(?:['\"]\s*(?:\+|\.\.|~)\s*['\"$\w(])|(?:['\"]\s*\.\s*['\"$])|"
    r"(?:[\w)\]]\s*(?:\+|\.\.)\s*['\"])|(?:['\"]\s+['\"])",
    re.IGNORECASE)
STRING_LITERAL = re.compile(r"'([^'\\\n]*(?:\\.[^'\\\n]*)*)'|\"([^\"\\\n]*(?:\\.[^\"\\\n]*)*)\"")
EMBEDDED_PATH = re.compile(r"(?:~[\w.+-]*|[\w.@+-]*)(?:/[^\s'\"(){}<>;|&,`=:*?\[]*)+|"
                            r"(?<![\w~])~[\w.+-]*")
VARIABLE = re.compile(r"\$(?:\{([^}]*)\}|([A-Za-z_][A-Za-z0-9_]*)|([0-9@*#?$!_-]))")
HEREDOC = re.compile(r"<<(-?)[ \t]*(['\"]?)([\w.-]+)\2")
