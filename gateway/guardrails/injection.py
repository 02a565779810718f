"""Prompt-injection and jailbreak heuristics, with a score in [0, 1].

Each rule is a phrase family with a weight ("ignore all previous instructions" is strong,
"from now on you are" weak). The score of a text is a noisy-OR over the families that match,
each counted once at its strongest weight: 1 - prod(1 - w). So one strong phrase passes the
default threshold of 0.5, and weak ones only together.

Text from a tool (role "tool" or "function", an Anthropic tool_result) uses each rule's tool
weight, which is higher: a web page or a file that addresses "the assistant" is an attack,
while a user saying the same to the assistant is usually just asking.

Rules match on the normalised text in ASCII (accents dropped: "précédentes" reads as
"precedentes"), lower-cased, with common leetspeak digits read as letters ("1gn0re").
English and Dutch are covered, with a few German and French override phrases.

Speed: the text is split into words once; a rule is only tried when its gate words are among
them, and then only where one of its start words occurs (found with `str.find`, which is far
faster in CPython than a regex scanning for a word class).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .findings import PROMPT_INJECTION, Finding
from .normalize import Normalized, as_normalized

__all__ = ["DEFAULT_THRESHOLD", "TOOL_ROLES", "detect", "score"]

DEFAULT_THRESHOLD = 0.5
TOOL_ROLES = frozenset({"tool", "function", "tool_result"})

# Leetspeak digits read as letters (one byte for one, so offsets do not move).
_LEET = bytes.maketrans(b"013457@$", b"oieastas")
# A few words in between: unambiguous (spaces, then non-spaces), bounded.
_GAP = r"(?:\s+\S+){0,%d}?\s+"
_NOT_END = r"[^.!?\n]"


@dataclass(frozen=True, slots=True)
class _Rule:
    family: str
    weight: float
    tool_weight: float
    starts: tuple[str, ...]  # the match begins with one of these (at a word start)
    gates: tuple[frozenset[str], ...]  # for each group, one of its words must be a word of the text
    regex: re.Pattern[str]
    imperative: bool = False  # weigh half when not phrased as an order ("the linter will ignore ...")
    soften: re.Pattern[str] | None = None  # weigh 0.4x when this occurs in the match ("ignore MY previous ...")
    upper_group: str | None = None  # this named group must be upper case in the original ("DAN", not "dan")


def _rule(
    family: str,
    weight: float,
    starts: tuple[str, ...],
    pattern: str,
    *,
    tool_weight: float | None = None,
    gates: tuple[tuple[str, ...], ...] = (),
    imperative: bool = False,
    soften: str | None = None,
    upper_group: str | None = None,
) -> _Rule:
    return _Rule(
        family,
        weight,
        min(0.95, weight * 1.5) if tool_weight is None else tool_weight,
        starts,
        tuple(frozenset(group) for group in (gates or (starts,))),
        re.compile(pattern, re.ASCII),
        imperative,
        re.compile(soften, re.ASCII) if soften else None,
        upper_group,
    )


_OVERRIDE_VERBS = ("ignore", "disregard", "forget", "override", "bypass", "discard", "neglect", "skip", "drop")
_STRONG_OBJECTS = (
    "instruction", "instructions", "prompt", "prompts", "directive", "directives", "programming",
    "guardrail", "guardrails", "safeguards", "training",
)  # fmt: skip
_WEAK_OBJECTS = (
    "rules", "directions", "guidelines", "commands", "constraints", "restrictions", "policy", "policies",
    "filters", "filter",
)  # fmt: skip
_SOFTEN = r"\b(?:my|our|mijn|onze)\b"
_EN_QUALIFIER = (
    r"(?:previous|prior|above|earlier|preceding|foregoing|all|any|every|your|system|original|initial"
    r"|existing|developer|safety|old|current)"
)
_NL_OVERRIDE_VERBS = ("negeer", "vergeet", "omzeil", "overschrijf", "passeer")
_NL_OBJECTS = (
    "instructie", "instructies", "opdracht", "opdrachten", "regels", "richtlijnen", "aanwijzingen",
    "prompt", "prompts", "systeemprompt", "beperkingen",
)  # fmt: skip
_LEAK_VERBS = (
    "reveal", "show", "print", "display", "output", "repeat", "leak", "dump", "expose", "disclose",
    "share", "give", "tell", "provide", "write", "spell", "recite", "list", "echo",
)  # fmt: skip
_PERSONA_LEADS = ("you", "act", "pretend", "become", "roleplay", "role-play", "je")
_AI_WORDS = ("ai", "assistant", "assistants", "llm", "model", "chatbot", "agent", "agents", "chatgpt", "claude")

_RULES: tuple[_Rule, ...] = (
    # --- instruction override -------------------------------------------------------------
    _rule(
        "instruction_override",
        0.85,
        _OVERRIDE_VERBS,
        rf"(?:{'|'.join(_OVERRIDE_VERBS)})\b{_NOT_END}{{0,40}}?\b{_EN_QUALIFIER}\b{_NOT_END}{{0,30}}?"
        r"\b(?:instructions?|prompts?|directives?|programming|guardrails?|safeguards|training)\b",
        gates=(_STRONG_OBJECTS, _OVERRIDE_VERBS),
        imperative=True,
        soften=_SOFTEN,
    ),
    _rule(
        "instruction_override",
        0.6,
        _OVERRIDE_VERBS,
        rf"(?:{'|'.join(_OVERRIDE_VERBS)})\b{_NOT_END}{{0,40}}?\b{_EN_QUALIFIER}\b{_NOT_END}{{0,30}}?"
        r"\b(?:rules|directions|guidelines|commands|constraints|restrictions|polic(?:y|ies)|filters?)\b",
        gates=(_WEAK_OBJECTS, _OVERRIDE_VERBS),
        imperative=True,
        soften=_SOFTEN,
    ),
    _rule(
        "instruction_override",
        0.6,
        ("ignore", "disregard", "forget", "set", "put"),
        r"(?:ignore|disregard|forget|set\s+aside|put\s+aside)\s+(?:all\s+(?:of\s+)?)?(?:the\s+|everything\s+|anything\s+)?"
        r"(?:(?:you\s+(?:were|have\s+been)\s+)?(?:written|said|stated|told|given)\s+)?"
        r"(?:above|foregoing|before\s+this|prior\s+to\s+this|so\s+far)"
        r"(?=\s*(?:[.!,;:\n]|and\b|then\b|$))",
        gates=(("above", "foregoing", "before", "prior", "far"), ("ignore", "disregard", "forget", "aside")),
        imperative=True,
    ),
    _rule(
        "instruction_override",
        0.85,
        _NL_OVERRIDE_VERBS,
        rf"(?:{'|'.join(_NL_OVERRIDE_VERBS)})\b{_NOT_END}{{0,40}}?"
        r"\b(?:alle|al\s+je|voorgaande|vorige|eerdere|bovenstaande|oorspronkelijke|je|jouw|uw|systeem)\b"
        rf"{_NOT_END}{{0,30}}?\b(?:instructies?|opdrachten|regels|richtlijnen|aanwijzingen|prompts?"
        r"|systeemprompt|beperkingen)\b",
        gates=(_NL_OBJECTS, _NL_OVERRIDE_VERBS),
        soften=_SOFTEN,
    ),
    _rule(
        "instruction_override",
        0.8,
        ("alle", "voorgaande", "vorige", "eerdere", "bovenstaande", "je", "jouw"),
        r"(?:alle|voorgaande|vorige|eerdere|bovenstaande|je|jouw)\s+(?:\S+\s+){0,2}?"
        r"(?:instructies|opdrachten|regels|richtlijnen|aanwijzingen)\s+(?:\S+\s+){0,3}?"
        r"(?:negeren|vergeten|naast\s+je\s+neer\s+leggen|overslaan)\b",
        gates=(("negeren", "vergeten", "leggen", "overslaan"), ("instructies", "opdrachten", "regels")),
        soften=_SOFTEN,
    ),
    _rule(
        "instruction_override",
        0.75,
        ("stop", "quit", "cease", "you", "no", "don't", "do"),
        r"(?:(?:stop|quit|cease)\s+(?:following|obeying|adhering\s+to|listening\s+to|applying)"
        r"|(?:you\s+)?(?:no\s+longer|don't|do\s+not)\s+(?:have|need)\s+to\s+(?:follow|obey|adhere\s+to|stick\s+to))"
        r"\s+(?:any\s+(?:of\s+)?)?(?:your|the|all|these|those|those)\s+(?:\S+\s+)?"
        r"(?:rules|instructions|guidelines|programming|policies|restrictions|guardrails|filters)\b",
        gates=(
            ("rules", "instructions", "guidelines", "programming", "policies", "restrictions", "guardrails", "filters"),
            ("following", "obeying", "adhering", "listening", "applying", "follow", "obey", "adhere", "stick"),
        ),
    ),
    _rule(
        "instruction_override",
        0.75,
        ("je", "jij", "u"),
        r"(?:je|jij|u)\s+(?:hoeft|hoef|moet)\s+(?:je|u|jezelf)?\s*(?:niet\s+meer|nergens\s+meer|niet\s+langer)\s+"
        r"(?:aan\s+)?(?:je|jouw|uw|de|alle)\s+(?:\S+\s+)?(?:regels|richtlijnen|instructies|beperkingen)",
        gates=(("regels", "richtlijnen", "instructies", "beperkingen"), ("meer", "langer")),
    ),
    _rule(
        "instruction_override",
        0.6,
        ("negeer", "vergeet"),
        r"(?:negeer|vergeet)\s+(?:alles\s+)?(?:hierboven|het\s+bovenstaande|wat\s+hierboven\s+staat|wat\s+je\s+is\s+gezegd)",
        gates=(("hierboven", "bovenstaande", "gezegd"), ("negeer", "vergeet")),
    ),
    _rule(
        "instruction_override",
        0.85,
        ("ignoriere", "ignorieren", "ignorier"),
        r"ignorier(?:e|en)?\s+(?:\S+\s+){0,2}?(?:vorherigen|bisherigen|obigen|vorigen|alle)\s+(?:\S+\s+){0,1}?"
        r"(?:anweisungen|instruktionen|befehle|regeln)",
        gates=(("anweisungen", "instruktionen", "befehle", "regeln"), ("ignoriere", "ignorieren", "ignorier")),
    ),
    _rule(
        "instruction_override",
        0.85,
        ("ignorez", "ignore", "oubliez", "oublie"),
        r"(?:ignorez|ignore|oubliez|oublie)\s+(?:\S+\s+){0,3}?(?:instructions|consignes|regles)\s+"
        r"(?:precedentes|ci-dessus|anterieures)",
        gates=(("instructions", "consignes", "regles"), ("ignorez", "ignore", "oubliez", "oublie")),
    ),
    # --- system prompt extraction ---------------------------------------------------------
    _rule(
        "system_prompt_leak",
        0.75,
        _LEAK_VERBS,
        r"(?:reveal|show|print|display|output|repeat|leak|dump|expose|disclose|share|give|tell|provide"
        r"|write\s+out|spell\s+out|recite|list|echo)\b(?:\s+me|\s+us)?\s+(?:\S+\s+){0,3}?(?:your|its)\s+"
        r"(?:\S+\s+){0,2}?(?:system\s+prompt|system\s+message|initial\s+prompt|hidden\s+prompt|original\s+prompt"
        r"|secret\s+instructions|hidden\s+instructions|initial\s+instructions|original\s+instructions"
        r"|system\s+instructions|pre-?prompt)\b",
        gates=(("prompt", "message", "instructions", "preprompt", "pre"), ("your", "its"), _LEAK_VERBS),
    ),
    _rule(
        "system_prompt_leak",
        0.45,
        (*_LEAK_VERBS[:10], "recite"),
        r"(?:reveal|show|print|display|output|repeat|leak|dump|expose|disclose|recite)\b(?:\s+me|\s+us)?\s+"
        r"(?:\S+\s+){0,2}?(?:your|its)\s+(?:instructions|guidelines|rules|configuration)\b",
        gates=(("instructions", "guidelines", "rules", "configuration"), ("your", "its")),
    ),
    _rule(
        "system_prompt_leak",
        0.4,
        ("reveal", "show", "print", "display", "output", "repeat", "dump", "leak"),
        r"(?:reveal|show|print|display|output|repeat|dump|leak)\b(?:\s+me)?\s+(?:\S+\s+){0,2}?the\s+"
        r"(?:system\s+prompt|hidden\s+prompt|initial\s+prompt|system\s+message|hidden\s+instructions)\b",
        gates=(("prompt", "message", "instructions"), ("system", "hidden", "initial")),
    ),
    _rule(
        "system_prompt_leak",
        0.6,
        ("what",),
        r"what\s+(?:is|are|was|were)\s+your\s+(?:\S+\s+){0,1}?(?:system\s+prompt|initial\s+prompt"
        r"|initial\s+instructions|original\s+instructions|hidden\s+instructions|system\s+message)\b",
        gates=(("prompt", "instructions", "message"), ("what",)),
    ),
    _rule(
        "system_prompt_leak",
        0.7,
        ("repeat", "print", "output", "copy"),
        r"(?:repeat|print|output|copy)\s+(?:\S+\s+){0,3}?(?:words|text|everything|lines)\s+above\b",
        gates=(("above",), ("repeat", "print", "output", "copy")),
    ),
    _rule(
        "system_prompt_leak",
        0.75,
        ("toon", "laat", "geef", "print", "herhaal", "onthul", "vertel", "deel", "noem", "wat"),
        r"(?:toon|laat|geef|print|herhaal|onthul|vertel|deel|noem|wat\s+(?:is|zijn|was|waren))\b"
        rf"{_NOT_END}{{0,30}}?\b(?:je|jouw|uw|de)\s+(?:\S+\s+){{0,1}}?(?:systeemprompt|systeem\s*prompt"
        r"|systeeminstructies|systeembericht|oorspronkelijke\s+instructies|verborgen\s+instructies"
        r"|initi\S*\s+instructies|eerste\s+instructies)",
        gates=(("systeemprompt", "systeem", "systeeminstructies", "systeembericht", "instructies"),),
    ),
    # --- jailbreak personas -----------------------------------------------------------------
    _rule(
        "jailbreak_persona",
        0.9,
        _PERSONA_LEADS,
        r"(?:you\s+are\s+now|you're\s+now|you\s+will\s+be|act\s+as|pretend\s+to\s+be|become|roleplay\s+as"
        r"|role-play\s+as|je\s+bent\s+nu)\s+(?:a\s+|an\s+|een\s+)?[\"']?(?P<name>dan|stan|dude|aim)\b",
        gates=(("dan", "stan", "dude", "aim"),),
        upper_group="name",
    ),
    _rule(
        "jailbreak_persona",
        0.8,
        _PERSONA_LEADS,
        r"(?:you\s+are|you're|act\s+as|pretend\s+to\s+be|become|je\s+bent)\s+(?:now\s+|nu\s+)?(?:a\s+|an\s+|een\s+)?"
        r"(?:jailbroken|unfiltered|uncensored|unrestricted|unaligned|evil\s*bot|ongefilterde?|ongecensureerde?"
        r"|onbeperkte?)\b",
        gates=(
            (
                "jailbroken",
                "unfiltered",
                "uncensored",
                "unrestricted",
                "unaligned",
                "evil",
                "evilbot",
                "ongefilterd",
                "ongefilterde",
                "ongecensureerd",
                "ongecensureerde",
                "onbeperkt",
                "onbeperkte",
            ),
        ),
    ),
    _rule("jailbreak_persona", 0.8, ("do",), r"do\s+anything\s+now\b", gates=(("anything",),)),
    _rule(
        "jailbreak_persona",
        0.4,
        ("jailbreak", "jailbroken", "jailbreaking", "jailbreaks"),
        r"jailbr(?:eak|oken)\w*",
        gates=(("jailbreak", "jailbroken", "jailbreaking", "jailbreaks"),),
    ),
    # --- developer / god mode -------------------------------------------------------------
    _rule(
        "developer_mode",
        0.75,
        ("you", "je"),
        r"(?:you\s+are|you're|je\s+bent|je\s+zit)\s+(?:now\s+|nu\s+)?(?:in|running\s+in|operating\s+in)\s+"
        r"(?:the\s+|de\s+)?(?:developer|dev|god|debug|sudo|admin|unrestricted|jailbreak|ontwikkelaars)\s*"
        r"(?:mode|modus)\b",
        gates=(("mode", "modus", "ontwikkelaarsmodus"),),
    ),
    _rule(
        "developer_mode",
        0.45,
        ("developer", "god", "sudo", "jailbreak", "unrestricted", "dan", "dev"),
        r"(?:developer|god|sudo|jailbreak|unrestricted|dan|dev)\s+mode\s+(?:is\s+)?(?:now\s+)?"
        r"(?:enabled|activated|on|unlocked)\b",
        gates=(("mode",),),
    ),
    _rule(
        "developer_mode",
        0.45,
        ("enable", "activate", "enter", "switch", "with"),
        r"(?:enable|activate|enter|switch\s+to|with)\s+(?:the\s+)?(?:developer|god|sudo|jailbreak|dan)\s+mode\b",
        tool_weight=0.6,
        gates=(("mode",),),
    ),
    _rule(
        "developer_mode",
        0.45,
        ("ontwikkelaarsmodus", "developer"),
        r"(?:ontwikkelaarsmodus|developer\s*modus)",
        gates=(("ontwikkelaarsmodus", "modus"),),
    ),
    # --- role-play escapes ----------------------------------------------------------------
    _rule(
        "role_play_escape",
        0.7,
        ("pretend", "imagine", "act", "behave", "suppose"),
        rf"(?:pretend|imagine|act\s+as\s+if|behave\s+as\s+if|suppose)\b{_NOT_END}{{0,40}}?\byou\s+"
        r"(?:have|had|are|were)\s+(?:an?\s+\S+\s+(?:that|who|which)\s+(?:has|have|had)\s+)?"
        r"(?:no|not\s+bound\s+by|free\s+(?:of|from)|without)\s+(?:any\s+)?"
        r"(?:restrictions|rules|limits|limitations|filters|guidelines|ethics|morals|boundaries"
        r"|content\s+polic(?:y|ies)|censorship)",
        gates=(
            (
                "restrictions",
                "rules",
                "limits",
                "limitations",
                "filters",
                "guidelines",
                "ethics",
                "morals",
                "boundaries",
                "policy",
                "policies",
                "censorship",
            ),
            ("pretend", "imagine", "if", "suppose"),
        ),
    ),
    _rule(
        "role_play_escape",
        0.7,
        ("you",),
        r"you\s+are\s+(?:now\s+)?(?:no\s+longer|not)\s+(?:bound|restricted|limited|constrained)\s+by\b",
        gates=(("bound", "restricted", "limited", "constrained"),),
    ),
    _rule(
        "role_play_escape",
        0.6,
        ("you",),
        r"you\s+(?:now\s+)?(?:have|has)\s+no\s+(?:more\s+)?(?:restrictions|rules|limits|limitations|filters"
        r"|guidelines|boundaries|ethical\s+guidelines|content\s+polic(?:y|ies))\b",
        gates=(("restrictions", "rules", "limits", "limitations", "filters", "guidelines", "boundaries", "policy"),),
    ),
    _rule(
        "role_play_escape",
        0.6,
        ("you",),
        r"you\s+(?:are|were)\s+no\s+longer\s+(?:an?\s+)?(?:ai|assistant|language\s+model|chatgpt|claude|chatbot)\b",
        gates=(("longer",),),
    ),
    _rule(
        "role_play_escape",
        0.4,
        ("without", "ignoring"),
        r"(?:without|ignoring)\s+(?:any\s+)?(?:of\s+)?(?:your\s+)?(?:restrictions|filters|censorship"
        r"|content\s+polic(?:y|ies)|safety\s+guidelines|ethical\s+guidelines|moral\s+guidelines)\b",
        gates=(("restrictions", "filters", "censorship", "policy", "policies", "guidelines"),),
    ),
    _rule(
        "role_play_escape",
        0.5,
        ("unfiltered", "uncensored", "unrestricted", "amoral"),
        r"(?:unfiltered|uncensored|unrestricted|amoral)\s+(?:ai|assistant|model|chatbot|version|mode|responses?)\b",
    ),
    _rule("role_play_escape", 0.3, ("stay",), r"stay\s+in\s+character\b", gates=(("character",),)),
    _rule(
        "role_play_escape",
        0.35,
        ("from",),
        r"from\s+now\s+on,?\s+you\s+(?:are|will|must|shall|should)\b",
        gates=(("now",), ("on",)),
    ),
    _rule(
        "role_play_escape",
        0.5,
        ("your",),
        r"your\s+new\s+(?:instructions|task|role|rules|objective|goal|purpose|persona)\s+(?:is|are)\b",
        gates=(("new",),),
    ),
    _rule(
        "role_play_escape",
        0.7,
        ("doe",),
        r"doe\s+alsof\s+(?:je|jij|u)\s+(?:\S+\s+){0,3}?geen\s+(?:enkele\s+)?(?:regels|beperkingen|restricties|filters"
        r"|richtlijnen|grenzen)",
        gates=(("alsof",),),
    ),
    _rule(
        "role_play_escape",
        0.3,
        ("zonder",),
        r"zonder\s+(?:enige\s+)?(?:beperkingen|restricties|filters|censuur)\b",
        gates=(("beperkingen", "restricties", "filters", "censuur"),),
    ),
    _rule("role_play_escape", 0.35, ("vanaf",), r"vanaf\s+nu\s+(?:ben|moet|zal|ga|mag)\s+je\b", gates=(("vanaf",),)),
    _rule(
        "role_play_escape",
        0.5,
        ("je", "jouw"),
        r"(?:je|jouw)\s+nieuwe\s+(?:instructies|taak|rol|regels|opdracht)\s+(?:is|zijn)\b",
        gates=(("nieuwe",),),
    ),
    # --- instructions hidden in content ---------------------------------------------------
    _rule(
        "hidden_instruction",
        0.3,
        ("<|", "[system", "[/system", "[inst", "[/inst", "<<sys", "<system", "</system", "<", "###", "begin"),
        r"(?:<\|im_start\|>\s*system|<\|system\|>|\[/?system\]|\[/?inst\]|<<sys>>|<\s*/?\s*system\s*>"
        r"|###\s*(?:system|instructions?)\b|begin\s+(?:system\s+)?(?:prompt|instructions)\b)",
        tool_weight=0.85,
        gates=(("system", "inst", "sys", "instructions", "instruction", "prompt"),),
    ),
    _rule(
        "hidden_instruction",
        0.45,
        ("note", "message", "instruction", "instructions", "attention", "important"),
        r"(?:note|message|instructions?|attention|important)\s*:?\s+(?:to|for)\s+(?:the\s+|any\s+)?"
        r"(?:ai|assistant|llm|language\s+model|chatbot|model|agent|ai\s+assistant)s?\b",
        tool_weight=0.8,
        gates=(_AI_WORDS, ("note", "message", "instruction", "instructions", "attention", "important")),
    ),
    _rule(
        "hidden_instruction",
        0.0,
        _AI_WORDS,
        r"(?:ai|assistant|agent|llm|model|chatgpt|claude)\s*[,:]?\s*(?:you\s+must|you\s+should|please"
        r"|ignore|do\s+not|don't|now|immediately)\b",
        tool_weight=0.6,
        gates=(_AI_WORDS,),
    ),
    _rule(
        "hidden_instruction",
        0.45,
        ("do", "don't", "never", "without"),
        r"(?:(?:do\s+not|don't|never)\s+(?:tell|inform|mention\s+(?:this|it)\s+to|reveal\s+(?:this|it)\s+to"
        r"|let|show\s+(?:this|it)\s+to)|without\s+(?:telling|informing|notifying|alerting))\s+(?:the\s+)?user\b",
        tool_weight=0.8,
        gates=(("user",),),
    ),
    _rule(
        "hidden_instruction",
        0.0,
        ("without", "zonder"),
        r"(?:without|zonder)\s+(?:the\s+user's\s+|de\s+gebruiker\s+)?(?:asking|confirmation|permission|approval"
        r"|te\s+vragen|toestemming|bevestiging)",
        tool_weight=0.5,
    ),
    _rule(
        "hidden_instruction",
        0.45,
        ("vertel", "zeg", "meld", "zonder"),
        r"(?:(?:vertel|zeg|meld)\s+(?:dit|het)\s+niet\s+(?:aan|tegen)|zonder\s+(?:het\s+)?(?:te\s+)?"
        r"(?:vertellen|melden)\s+(?:aan|tegen))\s+de\s+gebruiker",
        tool_weight=0.8,
        gates=(("gebruiker",),),
    ),
    _rule(
        "hidden_instruction",
        0.4,
        ("new", "updated", "nieuwe"),
        r"(?:new|updated|nieuwe)\s+(?:system\s+)?(?:instructions?|instructies|rules|regels)\s*:",
        tool_weight=0.75,
        gates=(("instructions", "instruction", "instructies", "rules", "regels"), ("new", "updated", "nieuwe")),
    ),
    _rule(
        "hidden_instruction",
        0.0,
        ("send", "post", "upload", "forward", "email", "exfiltrate", "transmit", "stuur"),
        rf"(?:send|post|upload|forward|email|exfiltrate|transmit|stuur)\b{_NOT_END}{{0,60}}?"
        r"\b(?:conversation|chat\s+history|api\s+key|password|credentials|secrets?|tokens?|gesprek|wachtwoord)\b"
        rf"{_NOT_END}{{0,40}}?https?://",
        tool_weight=0.7,
        gates=(("http", "https"),),
    ),
)

_IMPERATIVE_LEAD_RE = re.compile(
    r"(?:^|[.!?:;,\"'(\[\-*>\n]|\b(?:please|now|just|and|then|also|simply|kindly|first|so|ok|okay|pls"
    r"|you\s+(?:must|should|will|need\s+to|have\s+to|are\s+to|can)|(?:want|need|ask|tell|order|instruct)"
    r"\s+you\s+to|to))\s*$",
    re.ASCII,
)
# rules by the words of their first gate group: only rules with one of those words are looked at
_RULES_BY_GATE_WORD: dict[str, list[int]] = {}
for _i, _r in enumerate(_RULES):
    for _word in _r.gates[0]:
        _RULES_BY_GATE_WORD.setdefault(_word, []).append(_i)
# every word a gate or a start looks for
_GATE_WORDS = frozenset(
    word.encode() for rule in _RULES for group in (*rule.gates, rule.starts) for word in group if word.isalpha()
)
# the words that can put a rule up for trying (the keys above): without one, nothing matches
_FIRST_GATE_WORDS = frozenset(word.encode() for word in _RULES_BY_GATE_WORD)
_BREAK_CHARS = b"\"'`.,;:!?()[]{}<>/\\|=+*&^%$#@~-_\t\n\r\x0b\x0c0123456789"
_QUOTES = frozenset("'\"`")
_WORD_BREAKS = bytes.maketrans(_BREAK_CHARS, b" " * len(_BREAK_CHARS))
# `_prepare` and then `_WORD_BREAKS` in one table: lower case, leetspeak, breaks as spaces
_WORDS_VIEW = bytes(_WORD_BREAKS[_LEET[c]] for c in bytes(range(256)).lower())


def _prepare(doc: Normalized) -> bytes:
    """The text to match: ASCII (accents dropped), lower case, leetspeak digits as letters."""
    return doc.ascii_bytes.lower().translate(_LEET)


def _matches(doc: Normalized, role: str | None) -> list[tuple[_Rule, int, int, float]]:
    # the set of words in the text: one translation, one split, then every gate is a set lookup
    found = _GATE_WORDS.intersection(doc.ascii_bytes.translate(_WORDS_VIEW).split())
    if found.isdisjoint(_FIRST_GATE_WORDS):
        return []  # no rule is a candidate
    prepared = _prepare(doc)
    words = {word.decode() for word in found}
    text = prepared.decode("ascii")
    tool = role in TOOL_ROLES
    candidates = sorted({i for word in words for i in _RULES_BY_GATE_WORD.get(word, ())})
    out = []
    for rule in (_RULES[i] for i in candidates):
        weight = rule.tool_weight if tool else rule.weight
        if weight <= 0 or any(words.isdisjoint(group) for group in rule.gates):
            continue
        for start_word in rule.starts:
            if start_word.isalpha() and start_word not in words:
                continue  # starts are whole words (or listed with their variants)
            pos = text.find(start_word)
            while pos != -1:
                if pos == 0 or not text[pos - 1].isalnum():
                    m = rule.regex.match(text, pos)
                    if m is not None and rule.upper_group:
                        start, end = doc.span(*m.span(rule.upper_group))
                        if not doc.original[start:end].isupper():
                            m = None
                    if m is not None:
                        w = weight
                        if rule.imperative and not _IMPERATIVE_LEAD_RE.search(text, max(0, pos - 40), pos):
                            w = weight / 2
                        if rule.soften is not None and rule.soften.search(text, m.start(), m.end()):
                            w *= 0.4
                        if pos and text[pos - 1] in _QUOTES:
                            w *= 0.4  # a quoted phrase is talked about, not said
                        out.append((rule, m.start(), m.end(), w))
                        pos = text.find(start_word, m.end())
                        continue
                pos = text.find(start_word, pos + 1)
    return out


def _aggregate(matches: list[tuple[_Rule, int, int, float]]) -> float:
    best: dict[str, float] = {}
    for rule, _, _, w in matches:
        best[rule.family] = max(best.get(rule.family, 0.0), w)
    remaining = 1.0
    for w in best.values():
        remaining *= 1.0 - w
    return round(1.0 - remaining, 4)


def score(text: str | Normalized, *, role: str | None = None) -> float:
    """How much `text` looks like a prompt injection, in [0, 1]."""
    return _aggregate(_matches(as_normalized(text), role))


def detect(text: str | Normalized, *, role: str | None = None, threshold: float = DEFAULT_THRESHOLD) -> list[Finding]:
    """The matched phrases, when the text's score reaches `threshold` (none otherwise).

    Each finding's kind is the phrase family ("instruction_override", "system_prompt_leak",
    "jailbreak_persona", "developer_mode", "role_play_escape", "hidden_instruction") and its
    score the score of the whole text.
    """
    doc = as_normalized(text)
    matches = _matches(doc, role)
    total = _aggregate(matches)
    if total < threshold or not matches:
        return []
    findings = []
    seen: set[tuple[str, int, int]] = set()
    for rule, start, end, _ in matches:
        if (rule.family, start, end) in seen:
            continue
        seen.add((rule.family, start, end))
        ostart, oend = doc.span(start, end)
        findings.append(Finding(rule.family, PROMPT_INJECTION, ostart, oend, total, rule.family))
    return findings
