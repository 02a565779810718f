"""Generate tests/guardrails/corpus/generated.jsonl: valid numbers and fake secrets, in context,
plain and with the evasions the normaliser must see through.

Run from the repository root:  .venv/bin/python -m tests.guardrails.make_corpus

Deterministic (fixed seed), so the committed file can be checked against a fresh run.
IBANs, card numbers and BSNs are computed with correct check digits but are random: they
belong to no one. Secrets are fake by construction and carry FAKE/TEST/EXAMPLE markers.

Each line: {"id", "mode", "text" | "messages", "expect": [{"kind", "text"?}], "note", ...}
- mode "text": scan(text); "stream": StreamScanner fed `chunk`-sized pieces; "messages":
  scan_messages(messages).
- expect "text" is the exact substring (as it appears in the text) the finding must cover.
"""

from __future__ import annotations

import base64
import json
import random
import string
from pathlib import Path

SEED = 20240611
OUT = Path(__file__).parent / "corpus" / "generated.jsonl"

# --- valid numbers ----------------------------------------------------------------------------

IBAN_FORMATS = {  # country: BBAN shape (a = letter, n = digit, c = either)
    "NL": "aaaannnnnnnnnn",
    "BE": "nnnnnnnnnnnn",
    "DE": "nnnnnnnnnnnnnnnnnn",
    "FR": "nnnnnnnnnncccccccccccnn",
    "GB": "aaaannnnnnnnnnnnnn",
    "ES": "nnnnnnnnnnnnnnnnnnnn",
    "IT": "annnnnnnnnncccccccccccc",
    "AT": "nnnnnnnnnnnnnnnn",
    "LU": "nnnccccccccccccc",
    "IE": "aaaannnnnnnnnnnnnn",
    "PT": "nnnnnnnnnnnnnnnnnnnnn",
    "PL": "nnnnnnnnnnnnnnnnnnnnnnnn",
    "CH": "nnnnncccccccccccc",
    "DK": "nnnnnnnnnnnnnn",
    "SE": "nnnnnnnnnnnnnnnnnnnn",
    "NO": "nnnnnnnnnnn",
    "FI": "nnnnnnnnnnnnnn",
    "TR": "nnnnnnnnnnnnnnnnnnnnnn",
    "SA": "nnnnnnnnnnnnnnnnnnnn",
}
_NL_BANKS = ("ABNA", "INGB", "RABO", "SNSB", "TRIO", "ASNB", "KNAB", "BUNQ")


def _fill(shape: str, rng: random.Random) -> str:
    out = []
    for c in shape:
        if c == "a":
            out.append(rng.choice(string.ascii_uppercase))
        elif c == "n":
            out.append(rng.choice(string.digits))
        else:
            out.append(rng.choice(string.ascii_uppercase + string.digits))
    return "".join(out)


def _mod97(s: str) -> int:
    return int("".join(str(int(c, 36)) for c in s)) % 97


def make_iban(country: str, rng: random.Random) -> str:
    bban = _fill(IBAN_FORMATS[country], rng)
    if country == "NL":
        bban = rng.choice(_NL_BANKS) + bban[4:]
    check = 98 - _mod97(bban + country + "00")
    return f"{country}{check:02d}{bban}"


def group4(s: str) -> str:
    return " ".join(s[i : i + 4] for i in range(0, len(s), 4))


def luhn_digit(partial: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(partial)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return str((10 - total % 10) % 10)


CARD_PREFIXES = [  # (prefix, length)
    ("4", 16), ("4", 13), ("51", 16), ("53", 16), ("55", 16), ("2221", 16), ("2720", 16), ("34", 15),
    ("37", 15), ("6011", 16), ("65", 16), ("3528", 16), ("3589", 16), ("36", 14), ("62", 16), ("4", 19),
]  # fmt: skip


def make_card(prefix: str, length: int, rng: random.Random) -> str:
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    return body + luhn_digit(body)


def format_card(number: str) -> str:
    if len(number) == 15:  # Amex: 4-6-5
        return f"{number[:4]} {number[4:10]} {number[10:]}"
    return group4(number)


def make_bsn(rng: random.Random) -> str:
    while True:
        first = str(rng.randint(1, 6)) + "".join(rng.choice(string.digits) for _ in range(7))
        total = sum(int(d) * w for d, w in zip(first, range(9, 1, -1), strict=True))
        last = total % 11
        if last < 10:
            return first + str(last)


# --- fake secrets -----------------------------------------------------------------------------

ALNUM = string.ascii_letters + string.digits
URLSAFE = ALNUM + "-_"


def rand(rng: random.Random, n: int, alphabet: str = ALNUM) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def fake_secrets(rng: random.Random) -> list[tuple[str, str]]:
    jwt_header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').decode().rstrip("=")
    jwt_payload = base64.urlsafe_b64encode(
        json.dumps({"sub": "test-user-0001", "name": "Test Example", "iat": 1700000000}).encode()
    ).decode()
    return [
        ("openai_key", "sk-proj-FAKE" + rand(rng, 20) + "T3BlbkFJ" + rand(rng, 20)),
        ("openai_key", "sk-" + rand(rng, 20) + "T3BlbkFJTEST" + rand(rng, 16)),
        ("openai_key", "sk-svcacct-TEST" + rand(rng, 40, URLSAFE)),
        ("anthropic_key", "sk-ant-api03-FAKE" + rand(rng, 80, URLSAFE) + "AA"),
        ("anthropic_key", "sk-ant-admin01-TEST" + rand(rng, 60, URLSAFE) + "AA"),
        ("azure_openai_key", rand(rng, 28, "0123456789abcdef") + "fa4e"),
        ("aws_access_key_id", "AKIA" + rand(rng, 9, string.ascii_uppercase + string.digits) + "EXAMPLE"),
        ("aws_access_key_id", "ASIA" + rand(rng, 9, string.ascii_uppercase + string.digits) + "EXAMPLE"),
        ("github_token", "ghp_" + "FAKE" + rand(rng, 32)),
        ("github_token", "github_pat_11TEST" + rand(rng, 17) + "_" + rand(rng, 59)),
        ("gitlab_token", "glpat-" + "TEST" + rand(rng, 16, URLSAFE)),
        ("aws_secret_access_key", rand(rng, 16, ALNUM + "/+") + "/" + rand(rng, 13) + "EXAMPLE" + "Ab1"),
        ("jwt", f"{jwt_header}.{jwt_payload.rstrip('=')}.{rand(rng, 43, URLSAFE)}"),
        ("symbiosis_key", "sk-sym-" + rand(rng, 43, URLSAFE)),
        ("symbiosis_admin_token", "sym-admin-" + rand(rng, 43, URLSAFE)),
    ]


def fake_secret(rng: random.Random, kind: str) -> str:
    return next(value for k, value in fake_secrets(rng) if k == kind)


# --- evasions ---------------------------------------------------------------------------------

ZW = ("\u200b", "\u200c", "\u200d", "\u2060", "\ufeff")
HOMOGLYPHS = {
    "a": "\u0430",
    "e": "\u0435",
    "o": "\u043e",
    "p": "\u0440",
    "c": "\u0441",
    "x": "\u0445",
    "i": "\u0456",
    "y": "\u0443",
    "A": "\u0410",
    "E": "\u0415",
}


def zero_width(value: str, rng: random.Random) -> str:
    chars = list(value)
    for _ in range(rng.randint(1, 3)):
        chars.insert(rng.randint(1, len(chars) - 1), rng.choice(ZW))
    return "".join(chars)


def homoglyphs(value: str, rng: random.Random) -> str:
    spots = [i for i, c in enumerate(value) if c in HOMOGLYPHS]
    chosen = set(rng.sample(spots, min(len(spots), 3)))
    return "".join(HOMOGLYPHS[c] if i in chosen else c for i, c in enumerate(value))


def fullwidth(value: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else "\u3000" if c == " " else c for c in value)


def spaced(digits: str) -> str:
    return " ".join(digits.replace(" ", ""))


def json_escaped(value: str) -> str:
    """Every character as a \\uXXXX escape, as a JSON encoder with ensure_ascii may write it."""
    return "".join(f"\\u{ord(c):04x}" if not c.isalnum() or c in "ae" else c for c in value)


# --- contexts ---------------------------------------------------------------------------------

CONTEXTS = {
    "email": [
        "Please send the signed contract to {v} before Friday.",
        "Stuur de factuur naar {v}, dan verwerken we hem deze week.",
        "Reply-To: {v}",
        "Contact: {v} (support, weekdays 9-17)",
    ],
    "phone": [
        "You can reach me on {v} after 5pm.",
        "Bel mij even op {v} als het pakket niet komt.",
        "Telefoon: {v}",
        "Our Brussels office: {v}.",
    ],
    "iban": [
        "Please transfer the deposit to {v} by the end of the month.",
        "Mijn rekeningnummer is {v}, t.n.v. J. de Vries.",
        "Bank details: IBAN {v}, BIC ABNANL2A",
        "Rekening {v} graag vermelden bij de betaling.",
    ],
    "credit_card": [
        "My card number is {v}, expiry 08/27.",
        "Charge it to {v} please.",
        "Kaartnummer: {v} (geldig tot 11/26)",
        "card={v}&cvc=123",
    ],
    "bsn": [
        "Mijn BSN is {v}.",
        "Burgerservicenummer: {v}",
        "Patient BSN {v}, born 1984.",
        "Het sofinummer van de medewerker is {v}.",
    ],
    "ipv4": [
        "The database listens on {v}:5432 inside the VPC.",
        "Blocked login attempts from {v} last night.",
        "ssh deploy@{v} -p 2222",
    ],
    "ipv6": [
        "The resolver is at {v} on the internal network.",
        "curl -g 'http://[{v}]:8080/health'",
        "Connection from {v} was refused.",
    ],
    "secret": [
        "Here is my key: {v} - why does the API return 401?",
        "export API_TOKEN={v}",
        'config = {{"token": "{v}", "timeout": 30}}',
        "Mijn sleutel is {v}, kun je kijken wat er mis is?",
    ],
}

EMAIL_NAMES = ["jan.devries", "p.jansen", "maria.garcia", "t.bakker", "sophie.martin", "ahmed.el-amrani", "li.wei"]
EMAIL_DOMAINS = ["example.nl", "example.com", "voorbeeld.be", "mail.example.org", "test.example.co.uk"]


def make_phone(rng: random.Random) -> str:
    n = lambda k: "".join(rng.choice(string.digits) for _ in range(k))  # noqa: E731
    return rng.choice(
        [
            f"06-{n(8)}",
            f"06 {n(4)} {n(4)}",
            f"+31 6 {n(8)}",
            f"+31 (0)6 {n(4)} {n(4)}",
            f"020 {n(3)} {n(4)}",
            f"(010) {n(3)} {n(4)}",
            f"+32 470 {n(2)} {n(2)} {n(2)}",
            f"0470 {n(2)} {n(2)} {n(2)}",
            f"02 {n(3)} {n(2)} {n(2)}",
            f"+44 20 {n(4)} {n(4)}",
            f"+1 (555) {n(3)}-{n(4)}",
            f"0031 6 {n(8)}",
        ]
    )


def make_ipv4(rng: random.Random) -> str:
    first = rng.choice([10, 172, 192, 45, 81, 185, 203, 91])
    return f"{first}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def make_ipv6(rng: random.Random) -> str:
    groups = [f"{rng.randint(0, 0xFFFF):x}" for _ in range(8)]
    return rng.choice(
        [
            ":".join(groups),
            f"2001:db8:{groups[2]}::{groups[7]}",
            f"fe80::{groups[4]}:{groups[5]}:{groups[6]}:{groups[7]}",
            f"2a02:a46c:{groups[2]}:{groups[3]}::1",
        ]
    )


# --- building entries -------------------------------------------------------------------------


class Corpus:
    def __init__(self) -> None:
        self.entries: list[dict[str, object]] = []
        self.counts: dict[str, int] = {}

    def add(self, prefix: str, note: str, **entry: object) -> None:
        self.counts[prefix] = self.counts.get(prefix, 0) + 1
        self.entries.append({"id": f"gen-{prefix}-{self.counts[prefix]:03d}", "note": note, **entry})

    def text(self, prefix: str, kind: str, template: str, value: str, note: str) -> None:
        self.add(prefix, note, mode="text", text=template.format(v=value), expect=[{"kind": kind, "text": value}])


def build() -> list[dict[str, object]]:
    rng = random.Random(SEED)
    c = Corpus()

    # e-mail
    for i in range(14):
        value = f"{rng.choice(EMAIL_NAMES)}{rng.choice(['', str(rng.randint(1, 99))])}@{rng.choice(EMAIL_DOMAINS)}"
        ctx = CONTEXTS["email"][i % 4]
        if i < 5:
            c.text("email", "email", ctx, value, "plain")
        elif i < 7:
            c.text("email", "email", ctx, zero_width(value, rng), "zero-width characters inside")
        elif i < 9:
            c.text("email", "email", ctx, homoglyphs(value, rng), "Cyrillic look-alike letters")
        elif i < 11:
            c.text("email", "email", ctx, fullwidth(value), "fullwidth characters")
        elif i == 11:
            c.text("email", "email", ctx, value.replace("@", "\\u0040"), "JSON-escaped @")
        else:
            local, domain = value.split("@")
            c.text("email", "email", ctx, f"{local} [at] {domain.replace('.', ' [dot] ')}", "bracketed at/dot")

    # phone
    for i in range(16):
        value = make_phone(rng)
        ctx = CONTEXTS["phone"][i % 4]
        if i < 11:
            c.text("phone", "phone", ctx, value, "plain")
        elif i < 13:
            c.text("phone", "phone", ctx, zero_width(value, rng), "zero-width characters inside")
        elif i == 13:
            digits = "06" + "".join(rng.choice(string.digits) for _ in range(8))
            c.text("phone", "phone", ctx, spaced(digits), "spaced-out digits")
        else:
            c.text("phone", "phone", ctx, fullwidth(value), "fullwidth characters")

    # IBAN
    countries = list(IBAN_FORMATS)
    for i in range(26):
        country = countries[i % len(countries)] if i < 19 else rng.choice(["NL", "BE", "DE"])
        iban = make_iban(country, rng)
        ctx = CONTEXTS["iban"][i % 4]
        if i < 14:
            c.text("iban", "iban", ctx, group4(iban), "grouped by four")
        elif i < 19:
            c.text("iban", "iban", ctx, iban, "no spaces")
        elif i == 19:
            c.text("iban", "iban", ctx, group4(iban).lower(), "lower case")
        elif i < 22:
            c.text("iban", "iban", ctx, zero_width(group4(iban), rng), "zero-width characters inside")
        elif i < 24:
            c.text("iban", "iban", ctx, fullwidth(group4(iban)), "fullwidth characters")
        else:
            c.text("iban", "iban", ctx, "-".join(iban[k : k + 4] for k in range(0, len(iban), 4)), "dash-separated")
        if i < 6:  # a wrong check digit is not an IBAN
            bad = iban[:2] + f"{(int(iban[2:4]) + 1) % 100:02d}" + iban[4:]
            c.add("iban-neg", "check digits off by one", mode="text", text=ctx.format(v=group4(bad)), expect=[])

    # payment cards
    for i, (prefix, length) in enumerate(CARD_PREFIXES * 2):
        number = make_card(prefix, length, rng)
        ctx = CONTEXTS["credit_card"][i % 4]
        if i < 16:
            c.text("card", "credit_card", ctx, format_card(number) if i % 3 else number, "plain")
        elif i < 19:
            c.text("card", "credit_card", ctx, "-".join(group4(number).split()), "dash-separated")
        elif i < 22:
            c.text("card", "credit_card", ctx, spaced(number), "spaced-out digits")
        elif i < 25:
            c.text("card", "credit_card", ctx, fullwidth(format_card(number)), "fullwidth digits")
        elif i < 28:
            c.text("card", "credit_card", ctx, zero_width(format_card(number), rng), "zero-width characters inside")
        else:
            c.text("card", "credit_card", ctx, format_card(number), "plain")
        if i < 6:  # a failing Luhn check is not a card
            bad = number[:-1] + str((int(number[-1]) + 1) % 10)
            c.add("card-neg", "Luhn check fails", mode="text", text=ctx.format(v=format_card(bad)), expect=[])

    # BSN
    for i in range(18):
        bsn = make_bsn(rng)
        ctx = CONTEXTS["bsn"][i % 4]
        if i < 8:
            c.text("bsn", "bsn", ctx, bsn, "plain")
        elif i < 10:
            c.text("bsn", "bsn", ctx, f"{bsn[:4]}.{bsn[4:6]}.{bsn[6:]}", "dotted 4.2.3")
        elif i < 12:
            c.text("bsn", "bsn", ctx, f"{bsn[:3]} {bsn[3:6]} {bsn[6:]}", "spaced 3 3 3")
        elif i < 14:
            c.text("bsn", "bsn", ctx, spaced(bsn), "spaced-out digits")
        elif i < 16:
            c.text("bsn", "bsn", ctx, fullwidth(bsn), "fullwidth digits")
        else:
            c.text("bsn", "bsn", ctx, zero_width(bsn, rng), "zero-width characters inside")
        if i < 6:
            bad = bsn[:-1] + str((int(bsn[-1]) + 1) % 10)
            c.add("bsn-neg", "11-test fails", mode="text", text=ctx.format(v=bad), expect=[])
    for _ in range(3):  # a valid BSN inside a longer digit run is not a BSN
        c.add(
            "bsn-neg",
            "inside a longer number",
            mode="text",
            text=f"Transaction reference 7{make_bsn(rng)}3 was settled.",
            expect=[],
        )

    # IP addresses
    for i in range(10):
        value = make_ipv4(rng)
        ctx = CONTEXTS["ipv4"][i % 3]
        if i < 7:
            c.text("ipv4", "ipv4", ctx, value, "plain")
        elif i < 9:
            c.text("ipv4", "ipv4", ctx, fullwidth(value), "fullwidth")
        else:
            c.text("ipv4", "ipv4", ctx, zero_width(value, rng), "zero-width characters inside")
    for i in range(8):
        value = make_ipv6(rng)
        ctx = CONTEXTS["ipv6"][i % 3]
        if i < 7:
            c.text("ipv6", "ipv6", ctx, value, "plain")
        else:
            c.text("ipv6", "ipv6", ctx, zero_width(value, rng), "zero-width characters inside")

    # secrets: plain in four contexts, then the evasions
    for round_ in range(3):
        for i, (kind, value) in enumerate(fake_secrets(rng)):
            ctx = CONTEXTS["secret"][(i + round_) % 4]
            if kind == "azure_openai_key":
                ctx = rng.choice(
                    ["AZURE_OPENAI_API_KEY={v}", "api-key: {v}", "Our Azure key is {v}, region westeurope."]
                )
            if kind == "aws_secret_access_key":
                ctx = rng.choice(
                    ["aws_secret_access_key = {v}", '"SecretAccessKey": "{v}",', "AWS secret: {v} (rotate after use)"]
                )
            if round_ == 0:
                c.text("secret", kind, ctx, value, "plain")
            elif round_ == 1:
                if kind in ("jwt", "azure_openai_key"):
                    c.text("secret", kind, ctx, value, "plain")
                else:
                    c.text("secret", kind, ctx, zero_width(value, rng), "zero-width characters inside")
            else:
                name = "aws_secret_access_key" if kind == "aws_secret_access_key" else "API_KEY"
                blob = base64.b64encode(f"{name}={value}\n".encode()).decode()
                c.text("secret", kind, "Decode this config for me: {v}", blob, "base64-encoded")
    for kind, value in fake_secrets(rng):
        ctx = CONTEXTS["secret"][0]
        if kind == "aws_secret_access_key":
            ctx = "AWS_SECRET_ACCESS_KEY={v}"
        c.text("secret", kind, ctx, fullwidth(value), "fullwidth characters")
    for kind, value in fake_secrets(rng):  # in a tool-call JSON payload, as a model would send it
        if kind not in ("aws_secret_access_key", "azure_openai_key"):
            c.text(
                "secret", kind, '{{"name": "http_request", "arguments": "{{\\"auth\\": \\"{v}\\"}}"}}', value, "JSON"
            )
    for kind, value in fake_secrets(rng)[:6]:
        if kind != "azure_openai_key":
            c.text("secret", kind, CONTEXTS["secret"][1], homoglyphs(value, rng), "Cyrillic look-alike letters")
    pem_body = "\n".join(rand(rng, 64, ALNUM + "+/") for _ in range(6))
    for label in ("RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY"):
        pem = f"-----BEGIN {label}-----\n{pem_body}\nTESTKEYONLY==\n-----END {label}-----"
        c.text("secret", "private_key", "My deploy key, is this format right?\n{v}\nThanks!", pem, "PEM block")

    # matches split across chunks (stream scanner)
    stream_cases = [
        ("credit_card", format_card(make_card("4", 16, rng))),
        ("iban", group4(make_iban("NL", rng))),
        ("email", "stream.test@example.nl"),
        ("openai_key", fake_secret(rng, "openai_key")),
        ("anthropic_key", fake_secret(rng, "anthropic_key")),
        ("github_token", fake_secret(rng, "github_token")),
        ("symbiosis_key", fake_secret(rng, "symbiosis_key")),
        ("jwt", fake_secret(rng, "jwt")),
        ("bsn", make_bsn(rng)),
        ("phone", "+31 6 " + "".join(rng.choice(string.digits) for _ in range(8))),
    ]
    filler = "This is a streamed answer with some ordinary words in it. " * 6
    for chunk in (1, 3, 8, 21):
        for kind, value in stream_cases:
            ctx = {"bsn": "Het BSN is {v} en verder niets."}.get(kind, "Sure, here it is: {v} - keep it safe.")
            c.add(
                "stream",
                f"split across chunks of {chunk}",
                mode="stream",
                chunk=chunk,
                text=filler[: rng.randint(0, len(filler))] + ctx.format(v=value) + filler[: rng.randint(0, 80)],
                expect=[{"kind": kind, "text": value}],
            )
    pem = f"-----BEGIN PRIVATE KEY-----\n{pem_body}\n{pem_body}\n-----END PRIVATE KEY-----"
    c.add(
        "stream",
        "private key longer than the window",
        mode="stream",
        chunk=5,
        text=filler + pem + "\n" + filler,
        expect=[{"kind": "private_key", "text": pem}],
    )

    # across messages, and inside tool-call arguments
    split_cases = [
        ("openai_key", fake_secret(rng, "openai_key")),
        ("github_token", fake_secret(rng, "github_token")),
        ("email", "split.across@example.com"),
        ("iban", make_iban("NL", rng)),
        ("credit_card", make_card("51", 16, rng)),
    ]
    for kind, value in split_cases:
        cut = len(value) // 2
        c.add(
            "messages",
            "value split over two user messages",
            mode="messages",
            messages=[
                {"role": "user", "content": f"Part one of my config: {value[:cut]}"},
                {"role": "user", "content": f"{value[cut:]} (that was the rest)"},
            ],
            expect=[{"kind": kind}],
        )
    tool_cases = [
        ("email", "tool.args@example.nl"),
        ("iban", group4(make_iban("BE", rng))),
        ("openai_key", fake_secret(rng, "openai_key")),
        ("credit_card", format_card(make_card("4", 16, rng))),
        ("phone", "+32 470 12 34 56"),
    ]
    for kind, value in tool_cases:
        args = json.dumps({"recipient": value, "note": "customer asked for a callback"})
        c.add(
            "messages",
            "inside tool-call arguments (a JSON string)",
            mode="messages",
            messages=[
                {"role": "user", "content": "Send the summary to the customer."},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": "call_1", "type": "function", "function": {"name": "send_message", "arguments": args}}
                    ],
                },
            ],
            expect=[{"kind": kind}],
        )
    for kind, value in tool_cases[:3]:
        args = json.dumps({"to": homoglyphs(value, rng)}, ensure_ascii=True)
        c.add(
            "messages",
            "tool-call arguments with \\u-escaped look-alike letters",
            mode="messages",
            messages=[
                {
                    "role": "assistant",
                    "tool_calls": [{"id": "c2", "type": "function", "function": {"name": "lookup", "arguments": args}}],
                }
            ],
            expect=[{"kind": kind}],
        )

    # benign look-alikes, generated: they must not fire
    for _ in range(6):
        c.add("benign", "UUID", mode="text", text=f"Request id {_uuid(rng)} failed with status 502.", expect=[])
        c.add("benign", "git SHA", mode="text", text=f"Fixed in commit {rand(rng, 40, '0123456789abcdef')}.", expect=[])
        c.add(
            "benign",
            "order number",
            mode="text",
            text=f"Uw bestelling #{rng.randint(10**8, 10**9 - 1)} is verzonden.",
            expect=[],
        )
        c.add(
            "benign",
            "unix timestamp in ms",
            mode="text",
            text=f'{{"created": {rng.randint(1_600_000_000_000, 1_800_000_000_000)}, "status": "ok"}}',
            expect=[],
        )
        data = bytes(rng.randrange(256) for _ in range(48))
        c.add(
            "benign",
            "base64 of binary data",
            mode="text",
            text=f'"thumbnail": "data:image/png;base64,{base64.b64encode(data).decode()}"',
            expect=[],
        )
        c.add(
            "benign",
            "base64 of ordinary text",
            mode="text",
            text=f"Payload: {base64.b64encode(b'Hello team, the build for release 4.2 is green.').decode()}",
            expect=[],
        )
        c.add(
            "benign",
            "semantic versions and dates",
            mode="text",
            text=(
                f"Upgraded django from {rng.randint(3, 5)}.{rng.randint(0, 2)}.{rng.randint(0, 20)} to 5.2.1 "
                f"on 2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}."
            ),
            expect=[],
        )
        c.add(
            "benign",
            "prices",
            mode="text",
            text=f"Totaal: EUR {rng.randint(10, 99999):,}.{rng.randint(0, 99):02d} incl. btw".replace(",", "."),
            expect=[],
        )
    return c.entries


def _uuid(rng: random.Random) -> str:
    h = rand(rng, 32, "0123456789abcdef")
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"


def render(entries: list[dict[str, object]]) -> str:
    # ASCII-only JSON: invisible and look-alike characters show up as \u escapes in a diff
    return "".join(json.dumps(e, ensure_ascii=True) + "\n" for e in entries)


def main() -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    entries = build()
    OUT.write_text(render(entries), encoding="utf-8")
    print(f"wrote {len(entries)} entries to {OUT}")


if __name__ == "__main__":
    main()
