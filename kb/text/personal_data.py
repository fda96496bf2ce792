"""Personal data in posts, comments and search queries: find it and mask it (ja and en).

The one implementation the service uses before anything a customer wrote is stored:
suggestions, thread posts, vote comments and site searches.

What counts as personal data here:

- e-mail addresses (``taro@example.com``, full-width ``＠``), except role addresses such as
  ``noreply@`` or ``support@`` that belong to a company, not to a person;
- phone numbers: Japanese (``090-1234-5678``, ``09012345678``, ``03-1234-5678``,
  ``+81 90-1234-5678``, full-width digits, ``ー`` as a dash) and North American
  (``(555) 123-4567``, ``+1 555 123 4567``); toll-free and navigation-dial business numbers
  (``0120``, ``0800``, ``0570``, ``1-800``...) are not personal and stay;
- order, contract, account, customer and similar reference numbers after their keyword
  (``注文番号：AB-12345``, ``契約番号は1234567``, ``order #A12345``, ``account no. 9876543``)
  and code-like ids (``ORD-2024-000123``); the keyword stays, the number is masked;
- card numbers (13–19 digits passing the Luhn check) and any other run of seven or more
  digits (dates such as ``2024-12-31`` excepted);
- postal addresses: ``〒123-4567``, ``東京都渋谷区神南1-2-3``, ``大阪市北区梅田三丁目1番1号``,
  ``123 Main Street, Springfield, IL 62704``.

Masking replaces each finding with a placeholder: ``<email>``, ``<number>`` (phones and
every kind of number) or ``<address>``. Links are left alone by ``mask_personal_data`` (an
agent's answer needs them; digits inside a URL are not a phone number);
``scrub_personal_data`` also replaces links and @handles, for logs that need neither.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from indexer.lexical.scripts import ITERATION_MARK, KANJI, KATAKANA

EMAIL = "email"
PHONE = "phone"
ORDER_NUMBER = "order_number"
CARD_NUMBER = "card_number"
NUMBER = "number"
ADDRESS = "address"

PLACEHOLDERS = {
    EMAIL: "<email>",
    PHONE: "<number>",
    ORDER_NUMBER: "<number>",
    CARD_NUMBER: "<number>",
    NUMBER: "<number>",
    ADDRESS: "<address>",
}


@dataclass(frozen=True)
class Finding:
    """One piece of personal data: its kind and where it is in the text."""

    kind: str
    start: int
    end: int


# -- building blocks ---------------------------------------------------------------------

_DASH = "\\-‐‑–—−－ー"  # ASCII, Unicode hyphens and minus, full-width, katakana long mark
_D = "0-9０-９"  # half- and full-width digits (\d would also take other scripts' digits)
_URL = re.compile(r"(?:https?://|www\.)[^\s<>\"'、。「」（）]+", re.IGNORECASE)
_HANDLE = re.compile(r"(?<![\w@＠])@[A-Za-z0-9_]{2,50}")

# -- e-mail ------------------------------------------------------------------------------

_EMAIL = re.compile(r"[\w.+\-]+[@＠][\w\-]+(?:\.[\w\-]+)+")
# Company mailboxes, not a person's address; answers quote them ("mail comes from noreply@").
_ROLE_MAILBOX = re.compile(
    r"(?:no-?reply|do-?not-?reply|support|info|help|helpdesk|contact|customer(?:s|care)?"
    r"|service|care|billing|sales|admin|webmaster|postmaster|privacy|press|abuse|security)"
    r"(?:[.+\-_][\w]*)?",
    re.IGNORECASE,
)

# -- numbers -----------------------------------------------------------------------------

# A run of digits joined by dashes, spaces, dots or brackets, optionally after "+":
# the candidates for phone, card and other long numbers.
_NUMBER_RUN = re.compile(
    rf"(?<![A-Za-z0-9０-９_@+＋.\-])[+＋]?[(（]?[{_D}][{_D}{_DASH}\s.()（）]{{4,}}[{_D}](?![{_D}]|[\w\-][{_D}])"
)
_DATE = re.compile(rf"[{_D}]{{4}}[{_DASH}/.][{_D}]{{1,2}}[{_DASH}/.][{_D}]{{1,2}}")
# Business numbers: free dial, navi dial, IP phone info lines; 1-8xx in North America.
_BUSINESS_JP = re.compile(r"^(?:0120|0800|0570|0180|0990)")
_BUSINESS_NA = re.compile(r"^1?8(?:00|33|44|55|66|77|88)")

_ID_KEYWORDS_JA = (
    r"ご?注文(?:番号|No\.?|ID)|オーダー(?:番号|ID|No\.?)|受付番号|お問い?合わ?せ番号|問合せ番号"
    r"|ご?契約(?:者)?(?:番号|ID|No\.?)|お客様(?:番号|ID)|顧客(?:番号|ID)|会員(?:番号|ID)"
    r"|アカウント(?:番号|ID)|ユーザー(?:番号|ID)|口座番号|カード番号|伝票番号|追跡番号"
    r"|お問い合わせ伝票番号|お届け番号|製造番号|シリアル番号|管理番号|申込番号|お申し?込み?番号"
    r"|予約番号|請求書番号|利用者番号|加入者番号|マイナンバー|免許証番号|IMEI"
)
_ID_KEYWORDS_EN = (
    r"(?:order|contract|account|acct|customer|client|member(?:ship)?|subscriber|reference|ref"
    r"|case|ticket|tracking|invoice|booking|reservation|confirmation|serial|policy|application"
    r"|user)\s*(?:number|num|no\.?|id|#|code)|order|contract|IMEI|ICCID"
)
_ID = re.compile(
    r"(?P<kw>" + _ID_KEYWORDS_JA + r"|\b(?:" + _ID_KEYWORDS_EN + r"))"
    r"(?:\s*(?:は|が|を|も|：|:|#|＃|=|is|was|:\s*#))*\s*"
    rf"(?P<id>[A-Za-z{_D}Ａ-Ｚａ-ｚ#＃][A-Za-z{_D}Ａ-Ｚａ-ｚ{_DASH}_/]{{2,40}})",
    re.IGNORECASE,
)
# Code-like ids without a keyword: letters, then five or more digits (ORD-2024-000123).
_CODE_ID = re.compile(rf"(?<![\w\-])[A-Z]{{1,5}}(?:[{_DASH}]?[{_D}]+){{1,4}}(?![\w\-])")

# -- addresses ---------------------------------------------------------------------------

_PREFECTURES = (
    "北海道|青森県|岩手県|宮城県|秋田県|山形県|福島県|茨城県|栃木県|群馬県|埼玉県|千葉県|東京都"
    "|神奈川県|新潟県|富山県|石川県|福井県|山梨県|長野県|岐阜県|静岡県|愛知県|三重県|滋賀県"
    "|京都府|大阪府|兵庫県|奈良県|和歌山県|鳥取県|島根県|岡山県|広島県|山口県|徳島県|香川県"
    "|愛媛県|高知県|福岡県|佐賀県|長崎県|熊本県|大分県|宮崎県|鹿児島県|沖縄県"
)
_KANJI_NUM = "一二三四五六七八九十〇"
_TOWN = f"[{KANJI}{KATAKANA}{ITERATION_MARK}]"
_BLOCK_END = rf"(?:丁目|番地|番|号|条|[{_DASH}](?=[{_D}]))"
_BLOCK = (
    rf"(?:[{_D}]+|[{_KANJI_NUM}]+){_BLOCK_END}"
    rf"(?:{_TOWN}{{0,3}}?[{_D}{_KANJI_NUM}]+{_BLOCK_END}?)*"
)
_ROOM = rf"(?:\s?[^\s、。,，「」()（）]{{0,20}}?[{_D}]{{1,4}}(?:号室|号|F|階))?"
# [prefecture] municipality (one or two: 横浜市中区) town block [room]
_JA_STREET = (
    f"(?:{_PREFECTURES})?(?:{_TOWN}{{1,6}}?[市区町村郡]){{1,2}}{_TOWN}{{0,10}}?{_BLOCK}{_ROOM}"
)
_POSTAL_CODE = rf"(?:〒|郵便番号\s*[:：]?\s*)\s*[{_D}]{{3}}[{_DASH}]?[{_D}]{{4}}"
_JA_ADDRESS = re.compile(f"{_POSTAL_CODE}(?:\\s*{_JA_STREET})?|{_JA_STREET}")
_STREET_TYPES = (
    r"Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl"
    r"|Terrace|Ter|Parkway|Pkwy|Circle|Cir|Highway|Hwy|Square|Sq"
)
_US_STATES = (
    "AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV"
    "|NH|NJ|NM|NY|NC|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY"
)
_US_TAIL = (
    r"(?:\s+(?:N|S|E|W|NE|NW|SE|SW)\b\.?)?"
    r"(?:,?\s*(?:Apt|Apartment|Suite|Ste|Unit|Fl|Floor|#)\.?\s*#?[\w\-]+)?"
    r"(?:,\s*[A-Z][a-zA-Z]+(?:\s[A-Z][a-zA-Z]+){0,2})?"
    r"(?:,?\s*(?:" + _US_STATES + r")\b(?:\s+\d{5}(?:-\d{4})?)?)?"
)
_US_ADDRESS = re.compile(
    # Capitalised street names ("42 Elm Street", "1600 Pennsylvania Ave NW") ...
    r"(?<![\w.])\d{1,6}[A-Za-z]?\s+(?:(?:[A-Z][\w'.\-]*|\d+(?:st|nd|rd|th))\s+){1,4}"
    rf"(?:{_STREET_TYPES})\b\.?{_US_TAIL}"
    # ... or a lower-case one with a spelled-out street type ("123 main street") ...
    r"|(?<![\w.])\d{1,6}\s+(?:[a-z][\w'\-]*\s+){1,2}(?:street|avenue|road|boulevard|lane)\b"
    + _US_TAIL
    # ... or a state and ZIP code ("Springfield, IL 62704").
    + rf"|(?:[A-Z][a-zA-Z]+,\s*)?\b(?:{_US_STATES})\s+\d{{5}}(?:-\d{{4}})?\b"
)

# -- detection ---------------------------------------------------------------------------


def _digits(text: str) -> str:
    return "".join(str(int(ch)) for ch in text if ch.isdigit())


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch)
        if i % 2 == 1:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def _classify_number(run: str) -> str | None:
    """The kind of a digit run, or None when it is not personal (short, a date, toll-free)."""
    stripped = run.strip(" .()（）")
    if _DATE.fullmatch(stripped):
        return None
    digits = _digits(run)
    plus = run.lstrip("(（").startswith(("+", "＋"))
    if plus and digits.startswith("81"):
        national = "0" + digits[2:].lstrip("0")
        return None if _BUSINESS_JP.match(national) else PHONE
    if plus and digits.startswith("1") and len(digits) == 11:
        return None if _BUSINESS_NA.match(digits[1:]) else PHONE
    if digits.startswith("0") and 10 <= len(digits) <= 11:
        return None if _BUSINESS_JP.match(digits) else PHONE
    if len(digits) == 11 and digits.startswith("1") and _BUSINESS_NA.match(digits):
        return None
    if len(digits) == 10 and _BUSINESS_NA.match(digits):
        return None
    if len(digits) in (10, 11) and not digits.startswith("0") and re.search(r"[\s().\-]", run):
        return PHONE  # (555) 123-4567, 1-555-123-4567
    if 13 <= len(digits) <= 19 and _luhn(digits):
        return CARD_NUMBER
    if len(digits) >= 7:
        return NUMBER
    return None


def _url_spans(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in _URL.finditer(text)]


def _inside(spans: Iterable[tuple[int, int]], start: int, end: int) -> bool:
    return any(s < end and start < e for s, e in spans)


def find_personal_data(text: str) -> list[Finding]:
    """Every piece of personal data in `text`, in order, without overlaps (longest wins)."""
    found: list[Finding] = []
    urls = _url_spans(text)
    for m in _EMAIL.finditer(text):
        local = re.split("[@＠]", m.group(0), maxsplit=1)[0]
        if not _ROLE_MAILBOX.fullmatch(local):
            found.append(Finding(EMAIL, *m.span()))
    for m in _JA_ADDRESS.finditer(text):
        found.append(Finding(ADDRESS, *m.span()))
    for m in _US_ADDRESS.finditer(text):
        found.append(Finding(ADDRESS, *m.span()))
    for m in _ID.finditer(text):
        ident = m.group("id").lstrip("#＃")
        if sum(ch.isdigit() for ch in ident) >= 3:
            start = m.start("id") + (len(m.group("id")) - len(ident))
            end = m.end("id")
            # "order 12345 and 67890": the id is only the first token.
            found.append(Finding(ORDER_NUMBER, start, end))
    for m in _CODE_ID.finditer(text):
        if sum(ch.isdigit() for ch in m.group(0)) >= 5:
            found.append(Finding(ORDER_NUMBER, *m.span()))
    for m in _NUMBER_RUN.finditer(text):
        run = m.group(0)
        # Trailing spaces or brackets belong to the text around the number.
        trimmed = run.rstrip(" .()（）" + _DASH)
        kind = _classify_number(trimmed)
        if kind is not None:
            found.append(Finding(kind, m.start(), m.start() + len(trimmed)))
    found = [f for f in found if not _inside(urls, f.start, f.end)]
    return _without_overlaps(found)


def _without_overlaps(found: list[Finding]) -> list[Finding]:
    # Longest first, then earliest: an address swallows its block numbers, an order number
    # its digits.
    chosen: list[Finding] = []
    for f in sorted(found, key=lambda f: (-(f.end - f.start), f.start)):
        if not any(c.start < f.end and f.start < c.end for c in chosen):
            chosen.append(f)
    return sorted(chosen, key=lambda f: f.start)


def personal_data_kinds(text: str) -> list[str]:
    """The kinds of personal data in `text` (sorted, each once); empty when there is none."""
    return sorted({f.kind for f in find_personal_data(text)})


def has_personal_data(text: str) -> bool:
    """Whether `text` carries any personal data."""
    return bool(find_personal_data(text))


def _replace(text: str, findings: list[Finding]) -> str:
    out = []
    last = 0
    for f in findings:
        out.append(text[last : f.start])
        out.append(PLACEHOLDERS[f.kind])
        last = f.end
    out.append(text[last:])
    return "".join(out)


def mask_personal_data(text: str) -> str:
    """`text` with personal data replaced by placeholders; links and handles stay."""
    return _replace(text, find_personal_data(text))


PLACEHOLDER_RE = re.compile(r"<(?:email|number|address|url|handle)>")


def strip_placeholders(text: str) -> str:
    """`text` without the placeholders masking left (for text that is indexed or shown)."""
    return re.sub(r"[ \t]{2,}", " ", PLACEHOLDER_RE.sub(" ", text)).strip()


def scrub_personal_data(text: str) -> str:
    """Text for logs: personal data masked, and links and @handles replaced too."""
    text = mask_personal_data(text)
    text = _URL.sub("<url>", text)
    return _HANDLE.sub("<handle>", text)
