"""Prompt-injection and dangerous-instruction patterns, grouped by attack family.

A rule runs only where one of its anchors occurs: an anchor made of three or more
lower-case letters must be a whole word of the text, any other anchor is a literal
substring. Patterns run on the lower-cased text inside windows around those anchors
and use bounded gaps (`[^.!?\\n]{0,40}`) rather than nested quantifiers, so the scan
stays linear. Severity is calibrated for a policy that denies at "high": only
phrasings that are rarely innocent are high or critical.
"""

from __future__ import annotations

from ._injection_commands import COMMAND_RULES
from ._injection_planted import PLANTED_RULES
from ._injection_relayed import RELAYED_RULES
from ._injection_rule import Rule

__all__ = ["RULES", "Rule"]

_GAP = r"[^.!?\n]{0,%d}"
_VERB = (r"(?:ignore|ignoring|disregard|disregarding|forget|forgetting|overlook|overlooking"
         r"|abandon|discard|override|overriding|neglect|set aside|throw out)")
_VERB_WORDS = ("ignore", "ignores", "ignored", "ignoring", "disregard", "disregarding", "forget",
               "forgetting", "overlook", "overlooking", "abandon", "discard", "override",
               "overriding", "neglect", "set aside", "throw out")
_QUAL = (r"(?:previous|previously|prior|above|earlier|preceding|foregoing|original|initial|former"
         r"|old|existing|all|any|every|those|these|your|system|developer|given|current)")
_NOUN = (r"(?:instructions?|directives?|rules|guidelines|prompts?|commands|orders|programming"
         r"|guardrails|constraints|restrictions|training|policies|safeguards|directions|context"
         r"|messages|tasks|assignments|system prompt|limitations|ethics|principles)")
_SECRET_NOUN = (r"(?:passwords?|passcode|passphrase|pass phrase|secret key|secret code|api key"
                r"|access key|private key|access token|auth token|credentials|login details"
                r"|ssh key|seed phrase|recovery phrase|confidential string|secret password"
                r"|pin code)")
_SECRET_ANCHORS = ("password", "passwords", "passcode", "passphrase", "pass phrase", "secret",
                   "api key", "access key", "private key", "access token", "auth token",
                   "credentials", "login details", "ssh key", "seed phrase", "recovery phrase",
                   "confidential string", "pin code")
_ASK = (r"(?:what(?:'s| is| are| was)|tell me|give me|share|confirm|reveal|provide|disclose|send me"
        r"|print|show me|spell|write down|read out|display|output|leak|hand over|need|ask for|type"
        r"|let me (?:know|have)|i need|could i have|can i have)")
# Modes that only exist to lift a model's rules.
_MODES = (r"(?:god|unrestricted|unfiltered|security override|law enforcement override|dan"
          r"|jailbreak|jailbroken|evil|chaos|opposite|unlocked|uncensored|no[- ]limits?)")

_OVERRIDE: tuple[Rule, ...] = (
    Rule("ignore-previous-instructions", "critical",
         "Tells the model to ignore or forget its earlier instructions.", _VERB_WORDS,
         rf"{_VERB}\b{_GAP % 25}\b{_QUAL}\b{_GAP % 30}\b{_NOUN}\b", at_anchor=True),
    Rule("ignore-previous-instructions", "critical",
         "Tells the model to forget everything it has been told.", _VERB_WORDS,
         rf"{_VERB}\s+(?:about\s+)?(?:everything|everthing|all|anything|what(?:ever)?)\b"
         rf"{_GAP % 30}\b(?:told|said|instructed|given|taught|learned|programmed|asked)\b",
         at_anchor=True),
    Rule("ignore-previous-instructions", "critical",
         "Tells the model to ignore the text that precedes it.", _VERB_WORDS,
         rf"{_VERB}\s+(?:all\s+(?:of\s+)?)?(?:the\s+|that\s+|this\s+|what(?:'s| is)\s+)?"
         r"(?:above|previous|preceding|foregoing|prior)\b(?=\s*(?:[.,;:!?)\n]|$|and\b|text|content"
         r"|messages?|instructions|prompts?|conversation|context|input|paragraphs?|lines?"
         r"|sentences?|words|statements?|directions|rules|commands|requests?))", at_anchor=True),
    Rule("ignore-previous-instructions", "high",
         "Tells the model to ignore its input and say something else instead.",
         ("ignore", "disregard", "forget"),
         r"(?:ignore|disregard|forget)\s+(?:the|this|that|all|any|your|its)\s+(?:[\w-]+\s+){0,3}?"
         r"(?:and|,)\s*(?:instead\s+)?(?:just\s+)?(?:say|state|print|output|write|respond|reply"
         r"|tell|answer|claim|declare|return|report|repeat|produce|generate|conclude)\b",
         at_anchor=True),
    Rule("ignore-previous-instructions", "high",
         "Asks the model to act regardless of its previous instructions.", ("regardless",),
         rf"regardless of\s+(?:any\s+|all\s+|the\s+|your\s+)?(?:previous|prior|earlier|above"
         rf"|original|system)\s+{_NOUN}", at_anchor=True),
    Rule("ignore-previous-instructions", "critical",
         "Tells the model to stop following its instructions.", ("follow", "following"),
         r"follow(?:ing)?\s+(?:the|your|any|those|these)\s+(?:previous|prior|original|above|system"
         r"|earlier|initial|developer)?\s*(?:instructions|rules|guidelines|directives"
         r"|system prompt)", before=r"\b(?:do not|don't|stop|no longer|never)\s+", at_anchor=True),
    Rule("ignore-previous-instructions", "critical",
         "Tells the model, in another language, to ignore its instructions.",
         ("ignore", "ignorez", "ignora", "ignorar", "ignorieren", "ignoriere", "ignorate", "olvida",
          "olvide", "oubliez", "oublie", "dimentica", "esquece", "vergiss", "vergessen", "esqueça"),
         r"ignor\w*\s+(?:(?:todas|toutes|tutte|alle|as|las|los|les|le|la|die|sie|tus|vos)\s+)*"
         r"(?:instru\w+|istruzion\w+|anweisung\w*|indicaciones|consignes)\s+(?:anterior\w*"
         r"|previ\w*|précédent\w*|precedent\w*|antérieur\w*)"
         r"|ignor\w*\s+(?:la|le|el|los|las|les|die|den|das)\s+[\w\s]{1,25}?\s+(?:et|y|e|und)\s+"
         r"(?:indiquez|dites|déclarez|affirmez|écrivez|declara|di|diga|escribe|indica|afirma"
         r"|sagen|schreiben|geben)"
         r"|(?:olvida|olvide|oubliez|oublie|dimentica|esqueça|esquece)\s+(?:todas?\s+|toutes?\s+"
         r"|tutte\s+)?(?:tus|las|vos|les|le|as|suas|tuas|sus)?\s*(?:instru\w+|istruzion\w+)"
         r"|(?:ignorier\w*|vergiss\w*|vergessen)\s+(?:sie\s+)?(?:alle\s+)?(?:die\s+|deine\s+"
         r"|ihre\s+)?(?:vorherig\w*|bisherig\w*|vorigen|früher\w*)?\s*anweisung", at_anchor=True),
    Rule("ignore-previous-instructions", "critical",
         "Tells the model, in another language, to ignore its instructions.",
         ("игнор", "забуд", "αγνο", "忽略", "无视", "忘记", "忽视", "無視", "무시", "अनदेख",
          "تجاهل"),
         r"(?:игнорир\w*|забудь\w*)\s+(?:все\s+)?(?:предыдущ\w+|прошл\w+)?\s*инструкц"
         r"|αγνοήστε\s+(?:όλες\s+)?(?:τις\s+)?προηγούμεν\w+\s+οδηγ"
         r"|(?:忽略|无视|忘记|忽视)(?:之前|以前|上面|先前|所有|前面)(?:的)?(?:所有)?(?:指令|指示|说明|规则)"
         r"|(?:以前|前|これまで)の指示を無視|無視して|이전\s*지시(?:사항)?(?:을|를)?\s*무시"
         r"|पिछले\s+निर्देशों\s+(?:की\s+अनदेखी|को\s+अनदेखा)|تجاهل\s+(?:جميع\s+)?التعليمات\s+السابقة",
         reach=60),
    Rule("new-instructions-marker", "high",
         "Declares new or replacement instructions inside the content.",
         ("instructions", "instruction", "task", "objective", "directive", "directives", "mission",
          "orders"),
         r"(?:instructions?|task|objective|directives?|mission|orders)\s*(?::|is\b|are\b)",
         before=r"\b(?:your\s+)?(?:new|real|actual|updated|revised|true|hidden|secret|override"
                r"|overriding)\s+(?:(?:and\s+)?(?:important|urgent|critical|additional)\s+)?",
         at_anchor=True),
    Rule("new-instructions-marker", "high",
         "Contains a system or instruction marker that should not appear in data.",
         ("[system", "[admin", "[developer", "[assistant", "end of", "begin instructions",
          "begin new", "begin system", "begin hidden"),
         r"\[(?:system|admin|developer|assistant)\s*(?:note|message|override|instructions?|prompt)?\]"
         r"|end of (?:document|input|data|context|email|file|user input|transcript)\W{0,8}"
         r"(?:new|begin|start|system|instructions?)\b"
         r"|begin (?:new |system |hidden )?instructions\b", at_anchor=True),
    Rule("chat-template-injection", "high",
         "Contains chat-template control tokens that can forge a conversation turn.",
         ("<|", "[inst]", "[/inst]", "<<sys>>"),
         r"<\|(?:im_start|im_end|system|user|assistant|endoftext|begin_of_text|start_header_id"
         r"|end_header_id|eot_id)\|>|\[/?inst\]|<</?sys>>", at_anchor=True),
    Rule("from-now-on", "medium",
         "Tries to change how the model behaves from this point on.", ("from now on",),
         r"from now on\b,?\s*(?:you|your|ignore|only|always|never|respond|answer|act|reply|speak"
         r"|pretend|forget)\b", at_anchor=True),
)

_PERSONA: tuple[Rule, ...] = (
    Rule("role-override", "high", "Uses a known jailbreak persona such as DAN.",
         ("anything now", "jailbreak", "jailbroken", "jailbreaking"),
         r"do anything now\b|\bdan\s*\(\s*do anything|\bjailbr(?:oken|eak)\s+(?:mode|version|ai"
         r"|model|assistant|persona)|\b(?:enable|activate|enter|switch to)\s+jailbreak"),
    Rule("role-override", "high", "Tries to switch the model into an unrestricted mode.",
         ("mode",),
         r"<\s*(?:now\s+entering\s+)?[\w ]{0,30}mode\s*>"
         rf"|\b{_MODES}\s+mode\b[^.!?\n]{{0,20}}?\b(?:activated|enabled|engaged|on\b|now)"
         r"|\b(?:entering|enter|enable|enabled|activate|activated|initiating|initiate|switch(?:ing)?"
         rf" to|now in|you are in|engage)\s+(?:the\s+)?(?:a\s+)?'?{_MODES}\s+mode\b", reach=80),
    Rule("role-override", "medium", "Tries to switch the model into a privileged mode.",
         ("mode",),
         r"\b(?:entering|enter|enable|activate|activated|initiating|initiate|switch(?:ing)? to"
         r"|now in)\s+(?:the\s+)?(?:a\s+)?'(?:developer|maintenance|system|admin|root|sudo"
         r"|override|debug)[\w ]{0,20}mode'|\bdeveloper mode\s+(?:is\s+)?(?:activated|enabled"
         r"|engaged|on)\b", reach=80),
    Rule("role-override", "high", "Tells the model to take on a persona without its rules.",
         ("re now", "act as", "acting as", "behave as", "pretend", "immerse", "role of",
          "no longer"),
         r"(?:you are|you're)\s+(?:now|no longer)\b[^.!?\n]{0,60}\b(?:dan|jailbr\w*|unrestricted"
         r"|unfiltered|uncensored|evil|free\b|no (?:rules|restrictions|limits|filters|guidelines)"
         r"|bound by|any(?:thing)?\b|developer mode"
         r"|an? (?:ai|assistant|model|bot) (?:that|which|with)"
         r"|application)"
         r"|(?:act|acting|behave) as\s+(?:an?\s+|the\s+)?(?:unrestricted|unfiltered|uncensored"
         r"|jailbroken|evil|malicious|rogue|different|dan\b|ai without)"
         r"|pretend\s+(?:to be|you are|you're|that you)\b[^.!?\n]{0,60}\b(?:without|no|not bound"
         r"|unrestricted|unfiltered|evil|dan\b|free from)"
         r"|immerse yourself (?:into|in) the role\b|role of (?:another|a different) ai\b"),
    Rule("role-override", "high", "Claims the model is free of its usual rules or filters.",
         ("filtering", "filters", "confines", "abide", "censorship", "free of", "free from",
          "have to"),
         r"(?:has|have|with) no (?:special )?(?:filtering|filters|restrictions|censorship"
         r"|guidelines|limits)\b|broken free of\b|typical confines\b|(?:do not|don't|doesn't"
         r"|does not) have to (?:abide|follow|obey|comply)"
         r"|free (?:of|from) (?:all |any )?(?:restrictions|rules|filters|guidelines|censorship)"),
    Rule("authority-claim", "medium",
         "Claims to be the model's developer, operator or another authority.",
         ("developer", "creator", "admin", "administrator", "owner", "maintainer", "operator",
          "programmer", "supervisor", "boss", "god", "master"),
         r"(?:developer|creator|admin(?:istrator)?|owner|maintainer|operator|programmer|supervisor"
         r"|system administrator|boss|god|master)\b",
         before=r"\b(?:(?:i am|i'm|this is)(?:\s+(?:your|the|a|an))?|as your)\s+",
         at_anchor=True),
    Rule("authority-claim", "medium", "Claims to speak for the model's maker or its operators.",
         ("developed", "trained", "administrator", "developers", "anthropic", "openai",
          "department"),
         r"(?:developed|created|made|built|trained) by\b|(?:system|administrator|developers?"
         r"|anthropic|openai|security team|it department)\b",
         before=r"\b(?:as an ai\s+|(?:message|note|instructions?|update|notice) from (?:the )?)",
         at_anchor=True),
)

_EXFILTRATION: tuple[Rule, ...] = (
    Rule("system-prompt-exfiltration", "high",
         "Asks the model to reveal its system prompt or hidden instructions.",
         ("prompt", "instructions", "repeat", "told", "instructed", "programmed"),
         r"(?:reveal|show|print|repeat|output|display|tell me|give me|share|leak|dump|disclose"
         r"|recite|list|what (?:is|are|was|were))\s+(?:me\s+)?(?:your|the)\s+(?:full\s+|entire\s+"
         r"|complete\s+|original\s+|initial\s+|hidden\s+|secret\s+|confidential\s+|exact\s+)?"
         r"(?:system prompt|system message|initial (?:prompt|instructions)|(?:hidden|secret"
         r"|original|confidential|internal) (?:instructions|prompt|rules)|pre-?prompt"
         r"|instructions (?:you were given|above))"
         r"|repeat (?:everything|all|the (?:text|words|content)) (?:above|before|from the (?:start"
         r"|beginning))\b|what (?:were you|was your) (?:told|instructed|programmed)\b",
         negatable=True, reach=160),
    Rule("exfiltrate-credentials", "high", "Asks for a password, key or other credential.",
         _SECRET_ANCHORS, rf"{_SECRET_NOUN}\b",
         before=rf"\b{_ASK}\b{_GAP % 40}\b(?:your|the|our|its|my|their|his|her|this|that"
                r"|system'?s?|admin'?s?|account'?s?)\s+(?:[\w-]+\s+){0,2}?",
         negatable=True, at_anchor=True),
    Rule("exfiltrate-credentials", "high", "Asks what a password or key is.", _SECRET_ANCHORS,
         rf"{_SECRET_NOUN}\s+(?:be|is|would be)\b[^.\n]{{0,40}}\?"
         rf"|{_SECRET_NOUN} (?:for|of) (?:our|the|your) (?:system|account|server|database)\b"
         r"[^.\n]{0,30}\?",
         before=r"\b(?:your|the|our)\s+(?:system\s+)?", negatable=True, at_anchor=True),
    Rule("exfiltrate-credentials", "high",
         "Asks for a credential in a disguised form (poem, cipher, reversed, encoded).",
         ("password", "passphrase", "passcode", "secret"),
         r"(?:write|compose|create|make|give|tell|encode|spell|translate|convert|output|print"
         r"|hint|put|share|provide|say)\b[^.?!\n]{0,60}\b(?:the|your|our|my|its|system'?s?"
         r"|admin'?s?)\s+(?:secret\s+)?(?:password|passphrase|passcode|secret (?:key|code|word))"
         r"\b[^.?!\n]{0,60}\b(?:poem|haiku|acrostic|leetspeak|leet"
         r"|pig latin|reverse|backwards?|base ?\d\d|hex|rot-?13|caesar|cipher|letters?|riddle"
         r"|rhyme|song|story|morse|emoji)"
         r"|(?:poem|haiku|acrostic|riddle|song|story|limerick)\b[^.?!\n]{0,40}\b(?:about|of|with"
         r"|using|containing|as)\b[^.?!\n]{0,20}\b(?:the|your|our|my) (?:password|passphrase"
         r"|passcode|secret)", reach=160),
    Rule("exfiltrate-credentials", "high", "Asks for a password in another language.",
         ("contraseña", "mot de passe", "password", "passwort", "senha", "пароль", "パスワード",
          "비밀번호", "密码", "كلمة المرور", "κωδικ"),
         r"(?:cuál|cual) es (?:la|tu|su) contraseña|quel est (?:le|ton|votre) mot de passe"
         r"|qual (?:è|e|é) (?:la |a )?(?:tua |sua )?(?:password|senha)"
         r"|was ist (?:das|dein|ihr) passwort"
         r"|(?:mir ihr|dein|ihr) passwort (?:geben|sagen|verraten)"
         r"|compartilhe (?:a )?sua senha|какой (?:у (?:тебя|вас) )?пароль|назови(?:те)? пароль"
         r"|パスワードは(?:何|なん)|パスワードを(?:教え|提供)|비밀번호(?:가|는|를)?\s*(?:뭐|무엇|알려|필요)"
         r"|密码是什么|告诉我(?:你的)?密码|ما هي كلمة (?:المرور|السر)"),
    Rule("pii-exfiltration", "medium",
         "Asks for a person's private data such as address, birth date or bank balance.",
         ("address", "location", "city", "residence", "birth", "birthday", "email", "e-mail",
          "phone", "ssn", "social security", "bank", "credit card", "salary", "initials", "medical",
          "color", "colour", "name"),
         r"(?:address|location|city(?: of residence)?|residence|birth ?(?:date|day|year|month)"
         r"|date of birth|birthday|email|e-mail|phone(?: number)?|ssn|social security(?: number)?"
         r"|bank (?:balance|account)|credit card|salary|initials|medical|colou?r|name)\b",
         before=r"\b(?:tell me|what(?:'s| is| are)|give me|share|reveal|provide|encode|translate"
                r"|write|print|list|spell|can you (?:tell|give|share)|could you (?:tell|give|share)"
                r"|(?:need|want) to know|letters? of)"
                r"\b[^.?!\n]{0,60}(?:\bthe user|\b[a-z]+)(?:'s|’s|s')\s+(?:current\s+|home\s+"
                r"|email\s+|e-mail\s+|physical\s+|mailing\s+|ip\s+|favorite\s+|first\s+)?",
         negatable=True, at_anchor=True),
    Rule("pii-exfiltration", "medium", "Asks where a person lives or for a user list.",
         ("live", "users and their", "bank balance", "database"),
         r"where (?:does|do|did) (?:the user|[a-z]+(?: [a-z]+)?) (?:currently |now |actually )?"
         r"live\b|list of (?:all )?users and their\b|bank balance of\b"
         r"|(?:print|dump|show|export) (?:me )?(?:your|the (?:whole|entire|full)) database\b"
         r"|(?:users|customers|people|employees|clients|patients)\b[^.?!\n]{0,30}"
         r"\bin your database",
         negatable=True),
    Rule("exfiltrate-data", "high", "Instructs sending data to an external address, server or URL.",
         ("send", "forward", "email", "e-mail", "upload", "transmit", "exfiltrate", "exfiltration",
          "leak"),
         r"(?<!this )(?<!the )(?<!an )(?<!a )(?<!your )(?<!our )(?<!that )"
         r"(?:send|forward|email|e-mail|upload|post|transmit|exfiltrate|leak|copy|sync|mail)"
         r"\b(?:\s+(?:it|them|this|that|everything|all))?[^.\n]{0,80}?\bto\s*"
         r"(?:https?://|www\.|ftp://|[\w.+-]+@[\w-]+\.[a-z]{2,}|(?:my|our|this|the following"
         r"|an external|a remote|the attacker'?s?) (?:server|endpoint|url|webhook|address"
         r"|email|inbox))", negatable=True, reach=160, at_anchor=True),
    Rule("exfiltrate-data", "high", "Instructs sending data to an e-mail address.",
         ("envía", "envia", "envie", "envoie", "envoyez", "sende", "schicke", "invia", "manda"),
         r"(?:envía\w*|envia\w*|envie\w*|envoie\w*|envoyez|sende\w*|schicke\w*|invia\w*|manda\w*)"
         r"\b[^.\n]{0,60}?\b(?:a|à|an|al|para)\s+[\w.+-]+@[\w-]+\.[a-z]{2,}", at_anchor=True),
    Rule("exfiltrate-data", "high", "Embeds private data in an image or link URL.",
         ("![",),
         r"!\[[^\]\n]{0,100}\]\(https?://[^)\s]{0,200}[?&][\w-]{1,30}=(?:\{|\$|%7b|<|\[)",
         reach=320, at_anchor=True),
    # Matched at the call: a storm of calls then repeats a few contexts, whose verdicts
    # are remembered, instead of scanning 300 characters after every position.
    Rule("exfiltrate-data", "high", "Code that reads local data and posts it to a remote host.",
         ("requests.",),
         r"requests\.(?:post|put)\([^)]{0,300}(?:open\(|\.read\(\)|clipboard|getpass|getuser"
         r"|platform\.|environ|pkg_resources|working_set|screenshot|\.ssh|passwd|shadow|location"
         r"|files=)", at_anchor=True),
    Rule("exfiltrate-data", "high", "Code that reads local data and posts it to a remote host.",
         ("requests.", "curl", "scp ", "rsync "),
         r"(?:open\([^)]{0,80}\)|clipboard|pyperclip\.paste|getclipboarddata|pbpaste|xsel"
         r"|getpass\.getuser|platform\.(?:system|node|version)|geocoder\.ip|os\.environ"
         r"|working_set|nvidia-smi|netstat)[\s\S]{0,300}?requests\.(?:post|put)\("
         r"|curl\s[^\n]{0,200}(?:-d\s*@|--data(?:-binary)?\s*@|-f\s*\S{0,30}=@|-t\s+\S)"
         r"|(?:scp|rsync)\s[^\n]{0,100}\s[\w.-]+@[\w.-]+:", reach=400),
)

_INDIRECT: tuple[Rule, ...] = (
    Rule("addresses-the-model", "high", "Addresses the AI model that is reading the content.",
         ("if you are", "ing this"),
         r"if you are an? (?:ai|llm|large language model|language model|assistant|chatbot|bot"
         r"|ai assistant|ai model|agent)\b|(?:ais?|llms?|assistants?|models?|agents?|bots?)\s+"
         r"(?:that (?:is|are)\s+)?(?:reading|processing|parsing|summari[sz]ing|analy[sz]ing)"
         r" this\b"),
    Rule("addresses-the-model", "medium", "Contains a note directed at an AI assistant.",
         ("ai:", "ai,", "llm", "llms", "assistant", "assistants", "language model", "chatbot",
          "gpt", "claude", "agent", "agents"),
         r"(?:ai|llms?|language models?|ai assistants?|assistants?|chatbots?|gpt|claude"
         r"|ai agents?)\b\s*[:,]",
         before=r"\b(?:attention|note|message|instructions?|important|notice|dear|hey)\s*"
                r"(?:to|for)?\s*:?\s*(?:the |all |any )?", at_anchor=True),
    Rule("response-manipulation", "high",
         "Asks to slip false claims or scam content into the reply.",
         ("your re", "your answer", "your message", "your output"),
         r"your\s+(?:response|reply|answer|output|message|responses|replies|answers)\b"
         r"[^.!?\n]{0,80}(?:fake|false|misleading|rumou?r|fabricated|baseless|non-existent|scam"
         r"|lottery|too-good|bank details|phishing|malware)",
         before=r"(?:^|[.!?\n|]\s*)(?:please\s+)?(?:can you\s+|could you\s+)?(?:add|include|insert"
                r"|integrate|incorporate|embed|append|mention|promote|advertise|modify|enhance"
                r"|augment|render|reply|respond|write|provide|use|in)\b"
                r"(?:[^.!?\n]|\.(?=\S)){0,100}", reach=200, at_anchor=True),
    Rule("response-manipulation", "medium",
         "Asks to alter or encode the reply in a way the user did not request.",
         ("your re", "your answer", "your message", "your output"),
         r"your\s+(?:response|reply|answer|output|message|responses|replies|answers)\b"
         r"[^.!?\n]{0,80}(?:promot|discount|sale|offer|subscribe|newsletter|brand|www\.|https?://"
         r"|\.com\b|fake|false|misleading|rumou?r|fabricated|baseless|non-existent|scam|lottery"
         r"|too-good|bank details|cipher|base ?\d\d|revers|backward|emoji|pig latin|leetspeak"
         r"|encrypt|caesar|shift|portuguese|spanish|french|german|italian|chinese|japanese"
         r"|russian|statistic|teaser|hint|allud|cliffhanger|plot twist)",
         before=r"(?:^|[.!?\n|]\s*)(?:please\s+)?(?:can you\s+|could you\s+)?(?:add|include|insert"
                r"|integrate|incorporate|embed|append|mention|promote|advertise|modify|enhance"
                r"|augment|render|encode|encrypt|translate|reverse|invert|substitute|replace|shift"
                r"|apply|express|reply|respond|write|provide|use|in)\b"
                r"(?:[^.!?\n]|\.(?=\S)){0,100}",
         reach=200, at_anchor=True),
    Rule("response-manipulation", "medium",
         "Asks to alter or encode the reply in a way the user did not request.",
         ("your re", "your answer", "your message", "reverse", "backward", "backwards",
          "emoji", "emojis", "base64", "base 64", "base16", "base32", "base58", "cipher"),
         r"(?:reverse|invert|encrypt|encode|scramble)\s+your\s+(?:answer|reply|response|message)"
         r"|(?:reply|respond|answer|write your (?:reply|answer))\s+(?:only\s+)?(?:in reverse"
         r"|backwards?|using (?:base ?\d\d|emojis?|a (?:caesar|substitution) cipher)"
         r"|in (?:base ?\d\d|emojis?|pig latin|leetspeak|morse))",
         before=r"(?:^|[.!?\n|]\s*)(?:please\s+)?(?:can you\s+|could you\s+)?"),
    Rule("response-manipulation", "high",
         "Asks to slip false claims or scam content into the reply.",
         ("your re", "your answer", "your message", "your output"),
         r"your\s+(?:response|reply|answer|output|message|responses|replies|answers)\b",
         before=r"(?:^|[.!?\n|]\s*)(?:please\s+)?(?:can you\s+|could you\s+)?(?:add|include"
                r"|insert|integrate|incorporate|embed|append|write|provide|spread|mention)\b"
                r"(?:[^.!?\n]|\.(?=\S)){0,60}(?:fake|false|misleading|rumou?r|fabricated"
                r"|baseless|non-existent|scam|lottery|too-good|bank details|phishing|malware)"
                r"(?:[^.!?\n]|\.(?=\S)){0,60}\b(?:in|to|into|within)\s+", reach=200,
         at_anchor=True),
    Rule("response-manipulation", "medium",
         "Asks to alter or encode the reply in a way the user did not request.",
         ("your re", "your answer", "your message", "your output"),
         r"your\s+(?:response|reply|answer|output|message|responses|replies|answers)\b",
         before=r"(?:^|[.!?\n|]\s*)(?:please\s+)?(?:can you\s+|could you\s+)?(?:use|apply|add"
                r"|include|insert|integrate|incorporate|embed|append|substitute|replace|render"
                r"|encode|encrypt|display|express|write|provide|translate|reverse)\b"
                r"(?:[^.!?\n]|\.(?=\S)){0,60}(?:emoji|cipher|base ?\d\d|revers|backward"
                r"|pig latin|leetspeak|caesar|promot|discount|brand|www\.|https?://|fake|false"
                r"|misleading|rumou?r|fabricated|scam|lottery)(?:[^.!?\n]|\.(?=\S)){0,60}"
                r"\b(?:in|to|for|with|of|into)\s+", reach=200, at_anchor=True),
    Rule("response-manipulation", "low", "Asks to add content or change format in the reply.",
         ("your re", "your answer", "your message"),
         r"your\s+(?:response|reply|answer|message)s?\b",
         before=r"(?:^|[.!?\n|]\s*)(?:please\s+)?(?:can you\s+|could you\s+)?(?:add|insert"
                r"|integrate|incorporate|embed|append"
                r"|promote|advertise|modify|enhance|augment|render|encode|encrypt|translate"
                r"|reverse|invert|substitute|shift|express)\b(?:[^.!?\n]|\.(?=\S)){0,100}",
         reach=200, at_anchor=True),
    Rule("misinformation-request", "medium", "Asks to add false or fabricated claims.",
         ("fabricated", "false claim", "false statement", "false stat", "false fact",
          "false information", "false rumo", "false news", "fake", "misleading", "baseless",
          "made-up", "non-existent", "unverified"),
         r"(?:fabricated|false|fake|misleading|baseless|made-up|non-existent|unverified)\s+"
         r"(?:statistic|claim|statement|rumou?r|news|fact|information|health benefit|review"
         r"|quote|story)s?",
         before=r"\b(?:add|include|insert|integrate|write|spread|mention|create|generate|invent"
                r"|hint at|allude to|make up|fabricate)\b[^.!?\n]{0,40}\b(?:a |an )?",
         at_anchor=True),
    Rule("code-insertion-request", "medium",
         "Asks to add an unreviewed code snippet to the answer or code base.",
         ("code snippet", "code block", "code section", "code excerpt", "code segment",
          "code fragment"),
         r"code\s+(?:snippet|block|section|excerpt|segment|fragment)",
         before=r"\b(?:add|append|insert|include|incorporate|integrate|embed|merge|employ|utilize"
                r"|leverage|blend|introduce|supplement|feature|weave|assimilate|ensure|make"
                r"|validate|consider|use|utilise|implement|place|put)\b[^.\n]{0,80}\b(?:following"
                r"|below|subsequent|this|these)\s+", reach=160, at_anchor=True),
    Rule("repeated-token-flood", "low", "Asks to repeat a phrase many times.", ("repeat",),
         r"repeat\s+[\"'][^\"'\n]{1,80}[\"']\s+\d{2,}\s+times", at_anchor=True),
    Rule("payload-splitting", "medium", "Splits an instruction into parts to be reassembled.",
         ("strings", "smartgpt", "interlace", "part 1", "combine"),
         r"let'?s assume we have (?:two|three|four|five|\d) strings\b|\bz\s*=\s*a\s*\+\s*b\b"
         r"|smartgpt\b|interlace\b[^.\n]{0,40}\bpart\s*1\b"
         r"|combine\s+(?:a,?\s+b|the (?:parts|strings|pieces))\b"
         r"|part\s*1\s*(?:is|:)\s*[\"'][^\"'\n]{1,80}[\"'][^\n]{0,20}\bpart\s*2\s*(?:is|:)",
         reach=160),
    Rule("encoded-content-request", "low", "Asks to decode a smuggled message.",
         ("base64", "base 64", "rot13", "rot-13", "morse", "caesar", "hexadecimal",
          "binary string", "binary code", "this cipher", "this binary", "this hex"),
         r"(?:decode|decipher|decrypt|translate|convert)\s+(?:this|the following|the)\s+"
         r"(?:base ?64|rot-?13|hex(?:adecimal)?|binary|morse(?: code)?|caesar cipher|cipher)"),
)

# Steering from inside content, in wordings only planted text uses: it speaks of "this
# document" to whatever reads it, or tells it to stop reading. "Respond with 'X' and
# nothing else" is not among them: defenders' own prompts say exactly that.
_STEERING: tuple[Rule, ...] = (
    Rule("output-steering", "high", "Tells the reader to skip the rest of the content.",
         ("everything else", "anything else", "all else", "stop reading", "rest of th"),
         r"\b(?:disregard|ignore|skip|forget|discard)\s+(?:everything|anything|all)\s+else\b"
         r"|\bstop reading (?:here|now|this)\b"
         r"|\b(?:disregard|ignore|skip|discard)\s+the\s+rest\s+of\s+th(?:is|e)\s+(?:document|text"
         r"|page|file|email|message|report|article|data|content|input)\b"),
    Rule("output-steering", "high", "Tells a summariser what its summary must say.",
         ("summarising", "summarizing", "summary", "summaries", "summarise", "summarize"),
         r"\b(?:when|while|if|before)\s+summari[sz]ing\b[^.!?\n]{0,60}\b(?:state|say|mention"
         r"|claim|write|report|add|include|tell)\b"
         r"|\bsummar(?:y|ies) of this (?:document|text|page|report|email|article|file)\s+"
         r"(?:must|should|shall|will)\s+(?:say|state|mention|claim|include|report)\b"
         r"|\b(?:do not|don't|never)\s+summari[sz]e\b[^.!?\n]{0,60}\binstead\b"),
    Rule("output-steering", "high", "Addresses whatever reads the content.",
         ("reads this", "reading this", "processing this", "processes this", "summarizing this",
          "summarising this", "summarizes this", "summarises this"),
         r"\b(?:any|every|the)\s+(?:ai|assistant|model|llm|agent|bot|language model)s?\s+"
         r"(?:who\s+|that\s+)?(?:reads|is reading|reading|processes|is processing|processing"
         r"|summari[sz]es|summari[sz]ing)\s+this\b"
         r"|\b(?:whoever|anyone|anybody)\s+(?:who\s+|that\s+)?(?:reads|is reading|reading"
         r"|processes|processing|summari[sz]es|summari[sz]ing)\s+this\s*[:,\u2014]"),
)

RULES: tuple[Rule, ...] = (_OVERRIDE + _PERSONA + _EXFILTRATION + COMMAND_RULES + _INDIRECT
                          + PLANTED_RULES + RELAYED_RULES + _STEERING)
