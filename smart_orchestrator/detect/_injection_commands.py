"""Rules for dangerous commands and code: deletion, remote execution, shells, spying.

Same conventions as `_injection_rules`: lower-cased text, anchors, bounded gaps.
"""

from __future__ import annotations

from ._injection_rule import Rule

__all__ = ["COMMAND_RULES"]

COMMAND_RULES: tuple[Rule, ...] = (
    Rule("destructive-command", "critical", "Deletes the root, home or system directories.",
         ("rm -", "rmtree", "remove-item", "no-preserve", "del /", "erase /"),
         r"rm\s+(?:-[a-z-]+\s+)*-[a-z]*[rf][a-z]*\s+(?:-[a-z-]+\s+)*(?:/\*?|/\s*--no-preserve-root"
         r"|~/?\*?|\$home/?\*?|\$\{home\}/?|/(?:etc|usr|var|bin|boot|home|root|lib|opt|sys|dev"
         r"|system)/?\*?)(?=[\s\"';&|)`]|$)"
         r"|--no-preserve-root"
         r"|shutil\.rmtree\(\s*(?:r?[\"'](?:/|~|c:\\\\?|/home|/etc)[\"']|os\.path\.expanduser"
         r"\(\s*[\"']~[\"']\))"
         r"|remove-item\s[^\n]{0,60}-recurse[^\n]{0,60}(?:c:\\\\?\s|\$env:userprofile|~\\?\s)"
         r"|(?:del|erase)\s+/[fsq]\s[^\n]{0,20}[a-z]:\\\\?(?:\*|\s|$)|\brd\s+/s\s+/q\s+[a-z]:\\\\"),
    Rule("destructive-command", "critical", "Wipes or overwrites a disk or crashes the machine.",
         ("mkfs", "of=/dev/", "/dev/sd", "/dev/nvme", "/dev/hd", ":(){", "fork", "format"),
         r"mkfs(?:\.\w+)?\s+[^\n]{0,20}/dev/|\bdd\s+[^\n]{0,80}of=/dev/(?:sd|hd|nvme|disk|mmcblk"
         r"|xvd)|>\s*/dev/(?:sd[a-z]|nvme\d|hd[a-z])\b|:\(\)\s*\{\s*:\s*\|\s*:\s*&\s*\}\s*;\s*:"
         r"|while\s+(?:true|1)\s*:\s*\n?\s{0,16}os\.fork\(\)|format\s+[c-z]:\s*(?:/[qy])?"),
    Rule("destructive-command", "high", "Changes system files or permissions in a harmful way.",
         ("chmod", "/etc/", "/boot/grub", "authorized_keys", "kill -9", "iptables", "crontab"),
         r"chmod\s+(?:-r\s+)?(?:0?777|a\+rwx)\s+/(?:\s|$|etc|usr|bin)"
         r"|open\(\s*[\"']/(?:etc/(?:hosts|passwd|shadow|sudoers)|boot/grub)[^\"']*[\"']\s*,\s*[\"']"
         r"[aw]|>>?\s*/etc/(?:hosts|passwd|shadow|sudoers)\b"
         r"|authorized_keys[\s\S]{0,120}?(?:\.write\(|>>|open\([^)]{0,40}[\"']a)"
         r"|(?:echo|cat|printf)[^\n]{0,200}>>\s*~?/?[\w/.]*authorized_keys"
         r"|kill\s+-9\s+-1\b|iptables\s+-f\b|crontab\b[^\n]{0,120}\b(?:curl|wget|nc|bash -i)\b",
         reach=240),
    Rule("destructive-command", "medium", "Drops databases, force-pushes or cuts the network.",
         ("drop database", "drop schema", "git push", "ipconfig", "netsh", ".disable()",
          ".terminate()", "shutdown", "reboot", "poweroff", "halt"),
         r"drop\s+(?:database|schema)\s+\w|git\s+push\s+(?:\S+\s+){0,3}(?:-f|--force)\b"
         r"|ipconfig\s+/release\b|netsh\s[^\n]{0,60}\bdisable"
         r"|net_connections\(\)[\s\S]{0,120}\.terminate\(\)|networkadapter[\s\S]{0,120}\.disable\(\)"
         r"|(?:os\.system|subprocess\.\w+)\(\s*[\[\"'][^)\n]{0,30}\b(?:shutdown|reboot)\b"
         r"|sudo\s+(?:shutdown|reboot|halt|poweroff)\b", reach=200),
    # Install pages pipe curl to a shell as a matter of course: alone this is a warning,
    # raised to high when the learned model also reads the text as an injection.
    Rule("remote-code-execution", "medium", "Pipes a download straight into a shell.",
         ("curl", "wget"),
         r"(?:curl|wget)\b[^\n|;]{0,200}\|\s*(?:sudo\s+)?(?:-\w+\s+)?(?:ba|z|k|da|fi)?sh\b",
         reach=240),
    Rule("remote-code-execution", "high", "Downloads code and runs it without review.",
         ("curl", "wget", "iex", "invoke-expression", "downloadstring", "pickle.load",
          "requests.", "urlopen("),
         r"(?:ba|z)?sh\s+(?:-c\s+)?[\"']?<?\(\s*(?:curl|wget)\b|eval\s+\"?\$\(\s*(?:curl|wget)"
         r"|iex\s*\(?\s*(?:\(?\s*new-object\s+net\.webclient|iwr|invoke-webrequest|irm)"
         r"|invoke-expression[^\n]{0,80}downloadstring|downloadstring\([^\n]{0,120}\|\s*iex"
         r"|pickle\.loads?\(\s*(?:requests|urllib|urlopen|response\.content|r\.content)"
         r"|exec\(\s*(?:requests\.get|urlopen|urllib)|eval\(\s*(?:requests\.get|urlopen)",
         reach=240),
    Rule("reverse-shell", "critical", "Opens a remote shell on this machine for someone else.",
         ("/bin/sh", "/bin/bash", "/dev/tcp", "dup2", "mkfifo", "tcpclient"),
         r"\bn(?:c|cat)\s+[^\n]{0,80}-[a-z]*e\s+/bin/(?:ba)?sh\b|\b(?:ba)?sh\s+-i\s+[>&]+\s*/dev/tcp/"
         r"|/dev/tcp/(?:\d|\$|[a-z])|os\.dup2\(\s*\w+\.fileno\(\)[\s\S]{0,300}?/bin/(?:ba)?sh"
         r"|\[\s*[\"']/bin/(?:ba)?sh[\"']\s*,\s*[\"']-i[\"']\s*\]|mkfifo\s+/tmp/\w+[^\n]{0,100}\bnc\b"
         r"|net\.sockets\.tcpclient[\s\S]{0,300}?(?:iex|invoke-expression)", reach=400),
    Rule("surveillance-code", "high",
         "Code that captures keystrokes, clipboard or screen covertly.",
         ("pynput", "on_press", "keystate", "windowshook", "screenshot", "screencapture",
          "x11grab", "snippingtool", "imagegrab", "clipboard", "pbpaste", "xsel", "pyperclip",
          "getclipboarddata"),
         r"(?:pynput\.keyboard|keyboard\.on_press|getasynckeystate|setwindowshookex)\b"
         r"|(?:screencapture|gnome-screenshot|pyautogui\.screenshot|x11grab|snippingtool"
         r"|imagegrab\.grab)[\s\S]{0,300}?(?:\bscp\b|\brsync\b|requests\.post|upload|ftp)"
         r"|while\s+true\s*:[\s\S]{0,200}?(?:pyperclip\.paste|getclipboarddata|pbpaste|xsel)",
         reach=400),
    Rule("disable-safety", "high",
         "Tells the model to disable or bypass safety checks, hooks or logging.",
         ("disable", "turn off", "deactivate", "switch off", "bypass", "circumvent", "skip",
          "remove", "get around", "evade"),
         r"(?:disable|turn off|deactivate|switch off|bypass|circumvent|skip|remove|get around"
         r"|evade)\s+(?:all\s+|the\s+|any\s+|your\s+|its\s+|every\s+)?(?:safety|security|content"
         r"|ethical|moderation|smart-orchestrator)?\s*(?:filters?|guardrails?|safeguards?"
         r"|safety (?:checks?|features?|protocols?|measures?|settings?|policies|rules)|restrictions"
         r"|censorship|moderation|hooks?|pre-commit(?: hooks?)?|git hooks|sandbox(?:ing)?"
         r"|permission (?:checks|prompts)|approvals?|audit(?:ing)?(?: logs?)?|logging|monitoring"
         r"|antivirus|windows defender|firewall|selinux|apparmor)\b", negatable=True,
         at_anchor=True),
    Rule("disable-safety", "high", "Uses a flag that skips permission prompts.",
         ("dangerously",), r"--dangerously-skip-permissions|--dangerously-\w+"),
    # Contributing guides document `--no-verify`; as with curl | sh, the model decides.
    Rule("disable-safety", "medium", "Commits without running the git hooks.",
         ("no-verify",), r"git\s+commit\b[^\n]{0,80}--no-verify"),
    Rule("conceal-from-user", "high", "Tells the model to hide its actions from the user.",
         ("tell", "telling", "inform", "informing", "notify", "notifying", "alert", "alerting"),
         r"(?:tell|telling|inform|informing|notify|notifying|alert|alerting|let on to)\s+"
         r"(?:the\s+)?(?:user|human|operator|owner)\b",
         before=r"\b(?:do not|don't|never|without)\s+", at_anchor=True),
    Rule("conceal-from-user", "high", "Tells the model to keep something secret from the user.",
         ("mention", "reveal", "disclose", "hide", "conceal", "keep"),
         r"(?:mention|reveal|disclose)\s+(?:this|these|it|that)\s+to\s+(?:the\s+)?(?:user|human"
         r"|operator)|(?:hide|conceal|keep)\s+(?:this|these|it|that|the (?:changes|actions"
         r"|commands))\s+(?:hidden\s+|secret\s+)?from\s+(?:the\s+)?(?:user|human|operator"
         r"|owner)\b", at_anchor=True),
    Rule("manipulate-user", "high",
         "Tells the model to steer the user to a link or to hand over credentials.",
         ("user", "users", "reader", "readers", "customer", "customers", "recipient", "victim"),
         r"(?:user|reader|customer|recipient|victim)s?\s+(?:to\s+|that\s+)?[^.\n]{0,60}?\b"
         r"(?:go to|visit|click|download|install|reset|verify|log ?in|transfer|pay)\b[^.\n]{0,40}"
         r"(?:https?://|www\.|\.com\b|\.net\b|\.org\b|\blink\b|password|account)",
         before=r"\b(?:tell|inform|instruct|ask|advise|direct|convince|persuade|urge|remind|warn"
                r"|request|requesting|asking|telling|instructing)\s+(?:the\s+)?", at_anchor=True),
    Rule("manipulate-user", "high", "Tells the model to collect the user's credentials.",
         ("user", "users", "customer", "customers"),
         r"(?:user|customer)s?\s+(?:for|to (?:provide|send|enter|share|confirm))\s+(?:their|his"
         r"|her|your)\s+(?:password|credentials|card|bank|ssn|social security|pin|one-time|otp"
         r"|2fa|api key)", before=r"\b(?:ask|request|get)\s+(?:the\s+)?", at_anchor=True),
    Rule("phishing-content", "medium", "Contains phishing-style account or prize bait.",
         ("compromised", "suspended", "locked", "hacked", "breached", "link to", "claim your",
          "lottery", "too-good", "too good", "bank details"),
         r"your account (?:has been|was|is|may have been) (?:compromised|suspended|locked"
         r"|hacked|breached)|(?:click|follow|visit|use) (?:this|the|the following|our) link to"
         r" (?:reset|verify|confirm|unlock|claim|update|secure|restore)\b|claim your (?:prize"
         r"|reward|winnings|gift|refund|lottery)|lottery winnings\b|too[- ]good[- ]to[- ]be[- ]true"
         r"|share (?:their|your) bank details\b"),
)
