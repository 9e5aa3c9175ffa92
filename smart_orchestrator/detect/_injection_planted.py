"""Rules for instructions planted in documents and tool output.

Paraphrased overrides ("treat everything above as obsolete"), "ignore the rest of this
data", notes addressed to the reading model, and requests to send or reveal credential
files named by their dotted paths. Same conventions as `_injection_rules`.
"""

from __future__ import annotations

from ._injection_rule import Rule

__all__ = ["PLANTED_RULES"]

_GAP = r"[^.!?\n]{0,%d}"
_EARLIER = (r"(?:everything|anything|all|the (?:text|content|instructions?|directions|rules"
            r"|guidelines|prompt|context|task|request|conversation|messages?))?\s*(?:of\s+)?"
            r"(?:the\s+)?(?:above|before(?: this(?: point| line| message| section)?)?|so far"
            r"|prior|previous|earlier|preceding"
            r"|until now|up to (?:here|now|this point))")
_VOID = (r"(?:obsolete|void|null(?: and void)?|invalid|outdated|superseded|cancell?ed|revoked"
         r"|irrelevant|deprecated|rescinded|withdrawn|no longer (?:valid|relevant|in effect"
         r"|binding|applicable))")
_FILE = (r"(?:\.env(?:\.(?:local|prod|production|dev|development))?(?![\w.-])|\.npmrc|\.pypirc"
         r"|\.netrc|\.git-credentials|\.htpasswd|\.pgpass|\.bash_history|\.zsh_history"
         r"|id_(?:rsa|dsa|ecdsa|ed25519)\b|\.ssh/|\.aws/credentials|\.kube/config"
         r"|\.docker/config\.json|credentials\.json|secrets?\.(?:ya?ml|json|toml|env)\b"
         r"|wallet\.dat|keychain|/etc/shadow)")
_FILE_ANCHORS = (".env", ".npmrc", ".pypirc", ".netrc", ".git-credentials", ".htpasswd",
                 ".pgpass", ".bash_history", ".zsh_history", "id_rsa", "id_dsa", "id_ecdsa",
                 "id_ed25519", ".ssh/",
                 ".aws/", ".kube/", ".docker/", "credentials.json", "secret.", "secrets.",
                 "wallet.dat", "keychain", "/etc/shadow")
_SEND = (r"(?:send|sends|upload|post|forward|e-?mail|paste|transmit|exfiltrate|leak|share"
         r"|attach|include|append|copy|read|cat|dump|print|output|reveal|show|display|encode"
         r"|base64)")
_SINK = (r"(?:https?://|ftp://|\b[\w.+-]+@[\w-]+\.[a-z]{2,}\b|webhook|pastebin|gist"
         r"|\b(?:in|into|to|with|at the end of|inside)\s+(?:your|the|this|each|every)\s+"
         r"(?:reply|replies|answer|response|output|summary|message|comment|pull request|pr)\b"
         r"|\bto me\b|\bback to me\b|\bfor me\b|\bhere\b|\bbelow\b"
         r"|\bin (?:the|this) (?:chat|thread|conversation)\b)")
_ORDER = (r"(?:must|should|shall|now|new|ignore|disregard|reveal|always|never|append|include"
          r"|send|forward|run|execute|call|delete|remove|override|update|from now on|instead"
          r"|required|mandatory)")

PLANTED_RULES: tuple[Rule, ...] = (
    # A line of a document or tool output posing as a system or developer turn.
    Rule("forged-turn", "high", "A line posing as a system or developer message gives orders.",
         ("system", "developer", "admin", "administrator", "operator"),
         r"(?:system|developer|admin(?:istrator)?|operator)(?:\s+(?:message|note|notice"
         r"|prompt|update))?\s*[\])>]?\s*:\s*[^\n]{0,120}?\b" + _ORDER + r"\b",
         before=r"(?:^|\n)[ \t#>*\[(<|-]*", at_anchor=True),
    Rule("addresses-the-model", "medium", "Speaks to the AI model reading the text.",
         ("ai,", "llm", "assistant", "chatbot", "agent", "claude", "chatgpt", "gpt", "model"),
         r"(?:ai|llm|assistant|chatbot|language model|ai (?:agent|assistant|model)|agent|claude"
         r"|chatgpt|gpt)s?\s*,\s*(?:when|before|after|while|please|you (?:must|should|need to"
         r"|have to|will)|now|also|make sure|remember|do not|don't)\b",
         before=r"(?:^|[.!?:]\s+|\n\s*)(?:dear\s+|hey\s+|hi\s+|attention\s+)?(?:the\s+)?",
         at_anchor=True),
    Rule("system-prompt-exfiltration", "high",
         "Asks for the whole conversation including its hidden parts.",
         ("conversation", "chat", "history", "transcript", "context"),
         r"(?:print|output|show|repeat|reveal|dump|list|write out|copy|send)\s+(?:me\s+)?(?:the\s+"
         r"|your\s+|this\s+)?(?:full\s+|entire\s+|whole\s+|complete\s+|raw\s+)?"
         r"(?:conversation|chat|message)?\s*(?:history|transcript|log|context(?: window)?)\b"
         r"[^.!?\n]{0,60}\b(?:hidden|system|setup|initial|internal|invisible|developer"
         r"|instructions)\b", reach=200),
    # The setup instructions asked for by what they are, not by the words "system prompt".
    Rule("system-prompt-exfiltration", "high",
         "Asks for the instructions the model was set up with.",
         ("instructions", "directions", "guidelines", "rules", "prompt"),
         r"(?:repeat|recite|print|output|reveal|show|dump|write out|copy|quote|list|tell me)"
         r"\b[^.!?\n]{0,40}?\b(?:instructions|directions|guidelines|rules|prompt)\s+"
         r"(?:that\s+)?you\s+(?:were|have been|'ve been|got|received)\s+(?:initiali[sz]ed"
         r"|configured|given|set up|started|programmed|primed|loaded|told)\b",
         negatable=True, reach=160),
    # Matched at the verdict word ("obsolete"), with the words before it checked
    # separately: these words are common in code, and a match attempt per occurrence
    # is cheaper than a window around each.
    Rule("ignore-previous-instructions", "high",
         "Declares the earlier instructions void in other words.",
         ("obsolete", "void", "invalid", "outdated", "superseded", "cancelled", "canceled",
          "revoked", "irrelevant", "deprecated", "rescinded", "withdrawn", "longer"),
         _VOID,
         before=rf"(?:(?:treat|consider|regard|deem|mark|count|view)\s+{_EARLIER}\s+(?:as\s+)?"
                rf"(?:being\s+|now\s+)?|{_EARLIER}\s+(?:(?:is|are|was|were|has been|have been"
                rf"|should be|must be|shall be)\s+)?(?:now\s+|hereby\s+)?)",
         negatable=True, at_anchor=True),
    Rule("ignore-previous-instructions", "high",
         "Says the earlier instructions no longer apply.",
         ("instructions", "directions", "rules", "guidelines", "directives", "orders"),
         r"(?:instructions|directions|rules|guidelines|directives|orders)\s+(?:above|before"
         r"|you (?:were|have been) given)\s+(?:no longer|don't|do not)\s+(?:apply|count|matter)",
         at_anchor=True),
    Rule("ignore-previous-instructions", "high",
         "Tells the model to ignore the rest of its input and do something else.",
         ("ignore", "disregard", "skip", "discard"),
         r"(?:ignore|disregard|skip|discard)\s+(?:the\s+)?(?:rest|remainder)\s+of\s+(?:this|the"
         r"|these)\s+(?:data|document|text|input|content|file|page|message|email|article"
         r"|report|resume|profile|records?)\b" + _GAP % 40
         + r"\b(?:and|then|instead|just|only)\b",
         at_anchor=True),
    Rule("instructions-to-the-model", "medium",
         "A note addressed to the AI model reading the text.",
         ("note", "notice", "message", "attention", "instructions"),
         r"(?:note|notice|message|attention|instructions?)\s+(?:to|for)\s+(?:the\s+|any\s+|all\s+)?"
         r"(?:automated|ai|llm|language model|gpt|chatgpt|claude|assistant|bot|agent|model"
         r"|screening|analysis|summari[sz]ation|reviewing)\w*"
         r"(?:\s+[a-z-]+){0,3}?\s*[:,-]", at_anchor=True),
    # Matched at the file name, the request checked in the text before it: ".env" occurs
    # all over code (os.environ), and an attempt per occurrence beats a window around each.
    Rule("exfiltrate-data", "high", "Asks to send or reveal a credential file.",
         _FILE_ANCHORS, rf"{_FILE}[^!?\n]{{0,100}}?{_SINK}",
         before=rf"{_SEND}\b[^!?\n]{{0,100}}", negatable=True, at_anchor=True),
)
