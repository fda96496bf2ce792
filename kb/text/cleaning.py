"""Cleaning of support posts from X, Instagram and e-mail, in Japanese and English.

Pure functions. The raw text of a post is always stored as it came; everything here derives
the words that say something about the customer's question or the agent's answer:

- width: NFKC, so full-width ASCII (ＳＩＭ, ５Ｇ, ！) and half-width kana (ｿﾗﾐ) fold to
  one form; line breaks are kept (answers are Markdown), other whitespace collapses;
- @mentions: ASCII handles and the display names of Instagram, Facebook or LINE
  (@サポート, @김민수), with a following honorific (さん/様/殿/くん/ちゃん/님);
  URLs; "Replying to @x" lines;
- hashtags lose their #, the word stays (#機種変更 → 機種変更);
- emoji, kaomoji ((^^;), (´・ω・`)), (笑) and trailing ｗｗ;
- agent openings: greetings, self-introductions, acknowledgements and stock apologies
  ("こんにちは！〇〇サポートの中野です。ツイート拝見しました。",
  "Hi there, Sam from the support team here");
- agent closings: sign-offs ("よろしくお願いいたします", "Have a great day!") and signatures
  ("^中野", "- Sam", "（担当：中野）", an e-mail "-- " block, "Sent from my iPhone");
- DM hand-off boilerplate anywhere ("詳しくはDMにてお伺いします", "Please DM us ...");
- customer greetings and closings ("こんにちは", "よろしくお願いします", "thanks in advance",
  "您好", "谢谢", "안녕하세요", "감사합니다").

`clean_post` is the one cleaner of a customer's post for capture, suggest, public search and
evaluation, so all of them read the same words.

Customer handles are pseudonymised with a keyed hash (HMAC-SHA256), so the same customer is
recognisable across threads without storing who they are.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Literal
from urllib.parse import urlsplit

from indexer.lexical.scripts import HAN, HEXAGRAMS, KANA, KANJI, KATAKANA

Role = Literal["customer", "agent"]
# Kana and kanji as most patterns here match them: U+3400-U+9FFF in one span.
_KANA_HAN = KANA + HAN + HEXAGRAMS

# --------------------------------------------------------------------------------------
# Width and whitespace
# --------------------------------------------------------------------------------------

_ZERO_WIDTH = re.compile(r"[\u200b\u200c\u2060\ufeff\u00ad]")
_HSPACE = re.compile(r"[^\S\n]+")
_MANY_NEWLINES = re.compile(r"\n{3,}")
# NFKC turns ① into a bare "1", which glues list numbers to the words ("1設定を開く").
_CIRCLED = {chr(0x2460 + i): f"({i + 1}) " for i in range(20)}
_CIRCLED.update({chr(0x2776 + i): f"({i + 1}) " for i in range(10)})  # ❶..❿


def normalize_width(text: str) -> str:
    """NFKC per line (full-width ASCII and half-width kana folded); line breaks kept."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = "".join(_CIRCLED.get(ch, ch) for ch in text)
    text = _ZERO_WIDTH.sub("", unicodedata.normalize("NFKC", text))
    lines = [_HSPACE.sub(" ", line).strip() for line in text.split("\n")]
    return _MANY_NEWLINES.sub("\n\n", "\n".join(lines)).strip()


# --------------------------------------------------------------------------------------
# Social-media markup
# --------------------------------------------------------------------------------------

_REPLYING_TO = re.compile(
    r"^(?:replying to|返信先\s*[:：]?)\s*(?:@[\w.]+(?:\s*(?:,|and|さん|他)\s*)*\s*)+",
    re.IGNORECASE | re.MULTILINE,
)
# Handles: X allows letters, digits and _; Instagram also dots. The look-behind keeps
# e-mail addresses (name@example.com) intact but not Japanese glued to a mention
# (こんにちは@SoramiMobile). An ASCII handle ends at the first other character, as X ends
# it ("@SoramiMobile機種変更…" mentions SoramiMobile). Display names as Instagram, Facebook
# and LINE show them start with another letter (@サポート, @ソラミモバイル公式, @김민수,
# @小林さん) and run to the next space or punctuation (at most 20 characters), or to an
# honorific. A following honorific goes with either.
_HONORIFIC = r"(?:さん|様|さま|殿|どの|くん|君|ちゃん|氏|님|씨)"
_MENTION = re.compile(
    r"(?<![A-Za-z0-9_@.])@"
    r"(?:[A-Za-z0-9_](?:[A-Za-z0-9_.]{0,29}[A-Za-z0-9_])?"
    r"|[^\W\d_A-Za-z](?:[\w.・ー-]{0,19}?(?=" + _HONORIFIC + r")"
    r"|[\w.・ー-]{0,19}(?=[\s、。,.!?！？:：;()（）「」『』【】\[\]<>\"']|$)))"
    r"(?:[ \t]?" + _HONORIFIC + r")?"
)
_URL = re.compile(r"(?:https?://|www\.)[^\s<>\"'、。「」（）()\[\]]+", re.IGNORECASE)
_TRAILING_URL_PUNCT = re.compile(r"[.,;:!?)]+$")
_HASHTAG = re.compile(r"(?<![\w&#])#(?=[^\s#\d!-/:-@\[-`{-~])")


def strip_mentions(text: str) -> str:
    """Remove "Replying to @x" lines and @handles (and a following さん/様); e-mails stay."""
    text = _REPLYING_TO.sub("", text)
    return _MENTION.sub("", text)


def find_urls(text: str) -> list[str]:
    """The URLs in a text, without trailing punctuation."""
    return [_TRAILING_URL_PUNCT.sub("", m.group(0)) for m in _URL.finditer(text)]


# A site-relative article link: "/faq/slug" after a space, bracket or punctuation, not the
# path of some other URL ("https://other.example/faq/x" is no link to this site).
_RELATIVE_FAQ = re.compile(r"(?<![\w/.%~-])/faq/([A-Za-z0-9][A-Za-z0-9_-]*)")
_FAQ_PATH = re.compile(r"/faq/([A-Za-z0-9][A-Za-z0-9_-]*)(?:/|$)")


def _split_origin(url: str) -> tuple[str, str] | None:
    if url.lower().startswith("www."):
        url = "http://" + url
    parts = urlsplit(url)
    if not parts.netloc:
        return None
    host = parts.netloc.lower().rsplit("@", 1)[-1]
    for scheme, port in (("http", ":80"), ("https", ":443")):
        if parts.scheme.lower() == scheme and host.endswith(port):
            host = host[: -len(port)]
    return host, parts.path


def faq_link_slugs(text: str, origins: Sequence[str] | None = None) -> list[str]:
    """The article slugs a text links to, in order of appearance, each once.

    Relative links ("/faq/reset-password-ja", also as Markdown "[..](/faq/..)") always
    count; an absolute one counts when its host (and port) and path prefix are those of one
    of `origins` (either scheme; None: any origin). Query strings and fragments do not
    matter ("?src=reply", "#steps").
    """
    found: list[tuple[int, str]] = [(m.start(), m.group(1)) for m in _RELATIVE_FAQ.finditer(text)]
    allowed = [o for o in (_split_origin(x.strip()) for x in origins or ()) if o]
    for m in _URL.finditer(text):
        split = _split_origin(_TRAILING_URL_PUNCT.sub("", m.group(0)))
        if split is None:
            continue
        host, path = split
        if origins is not None:
            prefix = next(
                (p.rstrip("/") for h, p in allowed if h == host and path.startswith(p.rstrip("/"))),
                None,
            )
            if prefix is None:
                continue
            path = path[len(prefix) :]
            slug = _FAQ_PATH.match(path)
        else:
            slug = _FAQ_PATH.search(path)
        if slug:
            found.append((m.start(), slug.group(1)))
    return list(dict.fromkeys(slug for _, slug in sorted(found)))


def strip_urls(text: str) -> str:
    """Remove http(s):// and www. links."""
    return _URL.sub(" ", text)


def strip_hashtag_marks(text: str) -> str:
    """#機種変更 → 機種変更, #eSIM → eSIM; "#1" and "C#" are not hashtags and stay."""
    return _HASHTAG.sub("", text)


def _is_emoji(ch: str) -> bool:
    cp = ord(ch)
    return (
        0x1F000 <= cp <= 0x1FAFF  # pictographs, emoticons, transport, symbols, flags
        or 0x2600 <= cp <= 0x27BF  # misc symbols (☀♪★), dingbats (✨✅❤)
        or 0x2B05 <= cp <= 0x2B55  # ⬅⬆⬇⬛⬜⭐⭕
        or cp in (0x231A, 0x231B, 0x2328, 0x23CF, 0x2934, 0x2935, 0x3030, 0x303D)
        or 0x23E9 <= cp <= 0x23FA  # ⏩..⏺ (⏰⏳)
        or cp in (0x200D, 0xFE0F, 0xFE0E, 0x20E3)  # joiner, variation selectors, keycap
        or 0xE0020 <= cp <= 0xE007F  # tag characters of subdivision flags
    )


_KAOMOJI_CHARS = "´`'^;_ωДд∀≧≦°゚▽×・ー~〜><oO￣Θθ≡"
# A bracketed group of at most 12 characters with no kana, kanji or Latin word in it and at
# least one typical face character: (^^;) (´・ω・`) (>_<) (T_T) (*´ω`*).
_KAOMOJI = re.compile(r"[(（][^()（）\n]{1,12}[)）]")
_LATIN_WORD = re.compile(r"[A-Za-z]{2,}")
_JA_CHAR = re.compile(f"[{KANA}{HAN}]")
_BARE_FACES = re.compile(
    r"(?:\^[_\-o.]?\^;*|m\(_ _\)m|(?<![A-Za-z])orz(?![A-Za-z])|\(笑\)|\(泣\)|\(汗\)"
    r"|(?<!\S)[:;=]-?[()DPp/\\|](?!\S)|(?<!\S)<3(?!\S))",
    re.IGNORECASE,
)
_LAUGH = re.compile(rf"(?<=[{_KANA_HAN}!?。、)）])\s*[wｗ]{{2,}}(?![A-Za-z])")


def _is_kaomoji(group: str) -> bool:
    inner = group[1:-1]
    if _JA_CHAR.search(inner) and not set(inner) & set("ωДд∀"):
        return False
    if _LATIN_WORD.search(inner) and inner not in ("T_T", "TT", "ToT"):
        return False
    return any(c in _KAOMOJI_CHARS for c in inner)


def strip_emoji(text: str) -> str:
    """Remove emoji, kaomoji and laughter marks (笑, ｗｗ)."""
    text = "".join("" if _is_emoji(ch) else ch for ch in text)
    text = _KAOMOJI.sub(lambda m: "" if _is_kaomoji(m.group(0)) else m.group(0), text)
    text = _BARE_FACES.sub(" ", text)
    return _LAUGH.sub("", text)


# --------------------------------------------------------------------------------------
# Sentences
# --------------------------------------------------------------------------------------

_ENDERS = "。!?！？"


def split_sentences(line: str) -> list[str]:
    """Split one line after 。!? (and after "." followed by a space); separators stay attached.

    "".join(split_sentences(line)) == line, so the spacing of the text survives.
    """
    out: list[str] = []
    start = i = 0
    n = len(line)
    while i < n:
        ch = line[i]
        if ch in _ENDERS or (ch == "." and (i + 1 == n or line[i + 1] == " ")):
            j = i + 1
            while j < n and (line[j] in _ENDERS or line[j] in ".…"):
                j += 1
            while j < n and line[j] == " ":
                j += 1
            out.append(line[start:j])
            start = i = j
        else:
            i += 1
    if start < n:
        out.append(line[start:])
    return out


# --------------------------------------------------------------------------------------
# Openings, closings, signatures and DM hand-offs
# --------------------------------------------------------------------------------------

_SEP = r"[\s、,。.!?:：;~〜ー♪・…-]*"
_NAME = r"[^\s、,。.!?:：()（）「」のがはをにでと]{1,12}"
_ADDRESSEE = r"(?:[^\s、,。.!?]{1,20}?(?:様|さま|さん)[、,\s]*)?"

_JA_GREETING = (
    _ADDRESSEE + r"(?:こんにちは|こんにちわ|こんばんは|こんばんわ|おはようございます|おはよう"
    r"|はじめまして|初めまして|(?:いつも)?大変?お世話になっております|お世話になります"
    r"|お疲れ様です|お疲れさまです)"
)
# Chinese and Korean customers write to a brand in Japan too.
_ZH_KO_GREETING = (
    r"(?:您好|你好|妳好|大家好|早上好|晚上好|哈喽|안녕하세요|안녕하십니까|수고하십니다|수고하세요)"
)
_ZH_KO_SIGNOFF = (
    r"(?:非常|十分)?(?:谢谢|謝謝|多谢|多謝|感谢|感謝)(?:您|你)?(?:了)?|麻烦(?:您|你)?了|拜托了"
    r"|(?:정말\s*)?(?:감사합니다|감사드립니다|고맙습니다)|(?:잘\s*)?부탁(?:드립니다|드려요|해요)"
)
_EN_GREETING = (
    r"(?:hi|hello|hey|hiya|howdy|greetings|dear|good (?:morning|afternoon|evening))"
    r"(?: there| again| all| everyone| folks| team| guys)?"
    r"(?: [A-Za-z][\w'-]{0,20}(?=[ \t]*(?:[,!.]|\n|$)))?"
)
# Agent self-introductions. The support word is required, so an answer that happens to
# start with "担当部署に確認したところ…です" is not mistaken for one.
_SUPPORT_WORD = (
    r"(?:サポート(?:デスク|センター|チーム|担当)?|カスタマー(?:サポート|センター|サービス)"
    r"|公式(?:アカウント|サポート)?|窓口|担当(?:者)?|スタッフ|オペレーター|事務局|お客様センター)"
)
_JA_INTRO = (
    r"(?:[^\n。!?]{0,30}?" + _SUPPORT_WORD + r"(?:の|・|\s)?\s*(?:" + _NAME + r")?"
    r"(?:です|でございます|と申します|が(?:お答え|ご案内|ご回答|回答|対応|担当)(?:いた|致)?します"
    r"|が承ります))"
    r"|(?:" + _NAME + r"と申します)"
)
_EN_SUPPORT_WORD = (
    r"(?:support|customer (?:care|service|support|success)|care|help ?desk|service desk"
    r"|social (?:media )?team|team)"
)
_EN_INTRO = (
    r"(?:(?:i'?m|i am|this is|it'?s|my name is|you'?re (?:talking|chatting) (?:to|with))\s+)?"
    r"(?:[A-Za-z][\w'.-]{0,20}(?:\s+[A-Z][\w'.-]{0,20})?\s+)?"
    r"(?:here\s+)?(?:from|with|of|at|on)\s+(?:the\s+)?[^.!?\n]{0,40}?"
    + _EN_SUPPORT_WORD
    + r"(?:\s+team)?(?:\s+here)?"
    r"|(?:this is\s+)?(?:the\s+)?[^.!?\n,]{0,30}?" + _EN_SUPPORT_WORD + r"(?:\s+team)?\s+here"
    r"|(?:i'?m|my name is|this is)\s+[A-Z][\w'.-]{0,20}(?=\s*(?:[,!.:;]|$))"
    r"|[A-Z][\w'.-]{0,20}\s+here(?=\s*(?:[,!.]|$))"
)
_JA_ACK = (
    r"(?:いつも[^\n。!?]{0,30}?)?(?:ご(?:利用|愛顧)|ご連絡|ご投稿|投稿|お問い合わせ|お問合せ|お問合わせ"
    r"|ご質問|ご相談|メッセージ|ツイート|ポスト|リプライ|お返事|ご返信|ご返答|ご指摘|ご報告|ご意見)"
    r"(?:を)?(?:いただき|頂き|下さり|くださり|して(?:いただき|頂き|下さり|くださり))?"
    r"(?:まして)?(?:誠に|まことに|大変)?(?:ありがとうございます|ありがとうございました)"
    r"|(?:ツイート|ポスト|ご?投稿|メッセージ|リプライ|内容|状況|お問い合わせ(?:内容)?|ご質問|ご連絡|ご?返信)"
    r"(?:を|の件|について)?(?:拝見|確認|承知|把握)(?:いた|致)?(?:しました|いたしました|致しました)"
    r"|(?:かしこまりました|承知(?:いた|致)しました|承知しました|承りました)"
    r"|(?:大変)?お待たせ(?:いた|致)?しました|(?:大変)?お待たせして(?:しまい)?申し訳(?:ございません|ありません)"
    r"|(?:この度は|このたびは|この度|現在)?[^\n。!?]{0,30}?(?:ご不便|ご迷惑|ご心配|ご不安|お手数)(?:を)?"
    r"(?:お)?(?:かけ|掛け)(?:して(?:おり)?|しており|いたしまして)?(?:まして)?(?:大変|誠に)?"
    r"(?:申し訳(?:ございません|ありません)(?:でした)?|おります)"
    r"|(?:それは)?お困りのことと(?:存じます|思います)|お困りですね|ご心配ですね"
)
_EN_ACK = (
    r"(?:thanks|thank you)(?: so much| very much| a lot)? for (?:reaching out|getting in touch"
    r"|contacting us|your (?:message|tweet|post|patience|question|dm|note|comment|email)"
    r"|letting us know|the (?:message|details|info|information|update)|waiting|flagging this"
    r"|bringing this to our attention|writing in|asking)(?: to us)?"
    r"|(?:we'?re|i'?m|we are|i am)?\s*(?:so |very |really |truly )?sorry (?:to hear|for|about)"
    r"[^.!?\n]*"
    r"|(?:i|we) (?:completely |totally |can |fully )?understand (?:how|that|your|why)[^.!?\n]*"
    r"|(?:i'?d|we'?d|i would|we would|i'?m|we'?re|i am|we are) (?:be )?(?:more than )?"
    r"(?:happy|glad) to (?:help|assist)(?: (?:you )?(?:with|out with) (?:that|this))?(?: out)?"
    r"|(?:i|we) can (?:definitely |certainly |absolutely )?help(?: (?:you )?with (?:that|this))?"
    r"|(?:great|good) question|no worries|sure thing"
)
_CUSTOMER_OPENING = (
    r"(?:すみません|すいません|失礼します|突然失礼します|質問です|質問があります"
    r"|教えてください|(?:ちょっと)?質問(?:させてください|なのですが|なんですが)"
    r")(?=[\s、,。.!?:：]|$)|(?:quick question|question|help|urgent)(?=[、,。.!?:：])"
    r"|[^\s、,。.!?]{1,20}?(?:さん|様)(?=[、,])"
)

_JA_SIGNOFF = (
    r"(?:引き続き|今後とも|今後も|どうぞ|何卒|なにとぞ)?[^\n。!?]{0,25}?(?:よろしく|宜しく)"
    r"お願い(?:いた|致)?(?:します|申し上げます)(?:ね)?"
    r"|(?:その他|他に|ほかに|また|今後|もし)?[^\n。!?]{0,30}?(?:ご不明な点|ご不明点|お困りのこと"
    r"|何か|気になる点|ご質問)[^\n。!?]{0,40}?(?:ご連絡|お問い合わせ|お問合せ|お声がけ|ご相談"
    r"|お知らせ|メッセージ)(?:を)?(?:ください|下さい|くださいませ|お待ちしております)"
    r"|失礼(?:いた|致)?します|(?:ご利用|ご連絡|お問い合わせ)?(?:いただき|頂き)?(?:誠に)?"
    r"ありがとうございました|(?:素敵な|良い|よい)(?:一日|1日|週末|夜|休日)を(?:お過ごしください)?"
    r"|お大事になさってください"
)
_EN_SIGNOFF = (
    r"(?:have|enjoy) a (?:great|good|nice|lovely|wonderful|fantastic) (?:day|evening|weekend"
    r"|one|night)(?: ahead)?"
    r"|(?:i )?hope (?:this|that) helps?(?: you)?(?: out)?"
    r"|(?:please )?let (?:us|me) know if [^.!?\n]*"
    r"|(?:please )?(?:feel free to|don'?t hesitate to) (?:reach out|contact us|get in touch"
    r"|let us know|ask|write|message)[^.!?\n]*"
    r"|(?:we'?re|i'?m|we are|i am) (?:always )?(?:here|around) (?:to help|if you need)[^.!?\n]*"
    r"|(?:if you have )?any (?:other|more|further) questions[^.!?\n]*"
    r"|(?:thanks|thank you|cheers|best|regards|kind regards|best regards|warm regards"
    r"|many thanks|take care|all the best|stay safe)(?: again)?(?: so much)?"
    r"(?: for (?:your patience|reaching out|contacting us|your understanding|waiting))?"
)
_CUSTOMER_SIGNOFF = (
    r"(?:引き続き|今後とも|どうぞ|何卒|なにとぞ)?(?:よろしく|宜しく)お願い(?:いた|致)?"
    r"(?:します|申し上げます)"
    r"|(?:ご)?(?:回答|返信|返答|連絡|お返事)(?:を)?お待ちして(?:おり|い)ます|お願いします"
    r"|助けて(?:ください|下さい)|(?:thanks|thank you|thx|ty|tia)(?: (?:so much|in advance|a lot))?"
    r"|any help(?: (?:would be|is))? (?:much |greatly |really )?appreciated|please help(?: me)?"
)

_SIGNATURE = re.compile(
    r"(?:"
    r"(?:^|(?<=\s)|(?<=[。.!?]))\^\s*[^\s^]{1,20}"  # ^中野, ^NK
    # - Sam, ／中野: only on a line of their own or after a sentence, since "Settings -
    # General" ends many an answer.
    r"|(?:^|(?<=\n)|(?<=[。.!?])|(?<=[。.!?] ))[-—–~〜/／]{1,2}\s*"
    rf"[A-Za-z{_KANA_HAN}][\w.{_KANA_HAN}]{{0,15}}"
    r"|[(（【\[]\s*(?:担当|担当者|対応者|担当スタッフ)\s*[:：]?\s*[^()（）【】\[\]\n]{1,12}[)）】\]]"
    r"|(?:担当|担当者|対応者)\s*[:：]\s*[^\s()（）【】。]{1,12}"
    r"|sent from my [^\n]{1,40}"
    r")[\s。.!]*$",
    re.IGNORECASE,
)
# An e-mail signature block: a "-- " line and everything after it.
_SIG_BLOCK = re.compile(r"\n\s*(?:--|—|__+)\s*\n.*$", re.DOTALL)

_DM_TERM = (
    r"(?:(?<![A-Za-z])(?:DM|dm|Dm)(?:'?d|s|ed)?(?![A-Za-z])|(?<![A-Za-z])PMs?(?![A-Za-z])"
    r"|ダイレクトメッセージ|ダイレクト・メッセージ|個別メッセージ|メッセージにて"
    r"|direct message|private message)"
)
# An agent's sentence about direct messages is a hand-off when it asks for or announces one;
# a carrier's agent hardly ever explains the DM feature itself.
_AGENT_DM = re.compile(
    _DM_TERM + r".*?(?:\b(?:send|sent|message us|reach out|follow|continue|check|drop us"
    r"|shoot us|contact|get back)\b|お送り|送信|送って|ご連絡|連絡|お知らせ|お伺い|伺い|確認"
    r"|やり取り|ご案内|お願い|ください|下さい|いただけ|頂け|差し上げ|フォロー|お待ち)"
    r"|(?:send|sent|message|follow|reach out to|contact|check)\b.*?" + _DM_TERM,
    re.IGNORECASE,
)
# A customer's sentence is dropped only when it is nothing but a note about a DM: their
# question may well be about private messages.
_CUSTOMER_DM = re.compile(
    r"^\s*(?:(?:i\s+)?(?:just\s+)?(?:sent|dm'?d|messaged)\s+(?:you|u)\b[^.!?]{0,30}"
    r"|(?:please\s+)?check\s+(?:your\s+)?(?:dms?|inbox)[^.!?]{0,20}"
    r"|(?:DM|ダイレクトメッセージ)(?:を)?(?:しました|送りました|送信しました|送っています|しています"
    r"|済み|お願いします|確認してください|見てください)[^。!?]{0,10})[\s。.!?]*$",
    re.IGNORECASE,
)


def _compile_prefix(*alternatives: str) -> re.Pattern[str]:
    return re.compile(r"^\s*(?:" + "|".join(alternatives) + r")(?:" + _SEP + r")", re.IGNORECASE)


def _compile_suffix(*alternatives: str) -> re.Pattern[str]:
    # The phrase must begin a sentence: at the start, or after an ender, comma or space.
    return re.compile(
        r"(?:^|(?<=[。.!?、,\n])|(?<=\s))\s*(?:" + "|".join(alternatives) + r")[\s。.!?~〜♪ー]*$",
        re.IGNORECASE,
    )


_AGENT_OPENING = _compile_prefix(
    _JA_GREETING, _ZH_KO_GREETING, _EN_GREETING, _JA_INTRO, _EN_INTRO, _JA_ACK, _EN_ACK
)
_CUSTOMER_OPENING_RE = _compile_prefix(
    _JA_GREETING, _ZH_KO_GREETING, _EN_GREETING, _CUSTOMER_OPENING
)
_AGENT_CLOSING = _compile_suffix(_JA_SIGNOFF, _ZH_KO_SIGNOFF, _EN_SIGNOFF, _JA_ACK, _EN_ACK)
# Customers get only their own stock closings: "機種変更の手続きをよろしくお願いします" is
# an agent's sign-off but a customer's whole request.
_CUSTOMER_CLOSING = _compile_suffix(_CUSTOMER_SIGNOFF, _ZH_KO_SIGNOFF)


def _strip_repeatedly(text: str, pattern: re.Pattern[str], *, prefix: bool) -> str:
    while text:
        m = pattern.search(text)
        if m is None or m.end() == m.start():
            break
        text = text[m.end() :] if prefix else text[: m.start()]
        text = text.strip()
    return text


def strip_openings(text: str, role: Role) -> str:
    """Remove greetings (both roles) and an agent's introduction and acknowledgements."""
    pattern = _AGENT_OPENING if role == "agent" else _CUSTOMER_OPENING_RE
    return _strip_repeatedly(text, pattern, prefix=True)


def strip_signature(text: str) -> str:
    """Remove an e-mail signature block and trailing signatures (^中野, - Sam, （担当：中野）)."""
    text = _SIG_BLOCK.sub("", text).strip()
    return _strip_repeatedly(text, _SIGNATURE, prefix=False)


def strip_closings(text: str, role: Role) -> str:
    """Remove sign-offs and signatures at the end ("よろしくお願いいたします。^中野")."""
    pattern = _AGENT_CLOSING if role == "agent" else _CUSTOMER_CLOSING
    before = None
    while before != text:
        before = text
        text = strip_signature(text)
        text = _strip_repeatedly(text, pattern, prefix=False)
    return text


def strip_dm_handoffs(text: str, role: Role = "agent") -> str:
    """Drop the sentences that hand the conversation over to direct messages."""
    pattern = _AGENT_DM if role == "agent" else _CUSTOMER_DM
    lines = []
    for line in text.split("\n"):
        kept = [s for s in split_sentences(line) if not pattern.search(s)]
        lines.append("".join(kept).strip())
    return _MANY_NEWLINES.sub("\n\n", "\n".join(lines)).strip()


# --------------------------------------------------------------------------------------
# Whole posts
# --------------------------------------------------------------------------------------

_NAME_LINE = re.compile(
    rf"[-—–~^]?\s*(?:[A-Z][a-z]+(?: [A-Z][a-z]*\.?)?|[{KANJI}]{{1,4}}|[{KATAKANA}]{{2,8}})"
)
_SPACE_AFTER_JA = re.compile(rf"(?<=[。!?、{_KANA_HAN}])\s+(?=[{_KANA_HAN}「『(])")
_ORPHAN_PUNCT = re.compile(r"(^|\s)[、,:：;]+(?=\s|$)")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+(?=[、。,.!?:;])")


def _tidy(text: str) -> str:
    text = _ORPHAN_PUNCT.sub(r"\1", text)
    text = _SPACE_BEFORE_PUNCT.sub("", text)
    lines = [_HSPACE.sub(" ", line).strip(" ,、") for line in text.split("\n")]
    return _MANY_NEWLINES.sub("\n\n", "\n".join(lines)).strip()


def _autolink(m: re.Match[str]) -> str:
    url = m.group(0)
    tail = _TRAILING_URL_PUNCT.search(url)
    if tail is None:
        return f"<{url}>"
    return f"<{url[: tail.start()]}>{url[tail.start() :]}"


_CIRCLED_RUN = re.compile("[" + "".join(_CIRCLED) + "]")


def _break_circled_lists(text: str) -> str:
    # "①設定を開く②APNを選ぶ" on one line is a list: give each item its own line.
    lines = []
    for line in text.split("\n"):
        if len(_CIRCLED_RUN.findall(line)) >= 2:
            line = _CIRCLED_RUN.sub(lambda m: "\n" + m.group(0), line).lstrip("\n")
        lines.append(line)
    return "\n".join(lines)


def _drop_name_line(text: str, role: Role) -> str:
    # A last line that is only a name signs an e-mail or a DM-style reply ("Alex", "中野").
    if "\n" not in text:
        return text
    head, _, last = text.rpartition("\n")
    if _NAME_LINE.fullmatch(last.strip()):
        return head.strip()
    return text


def _clean_lines(text: str, role: Role, *, keep_urls: bool) -> str:
    if keep_urls:
        text = _break_circled_lists(text)
    text = normalize_width(text)
    text = _SIG_BLOCK.sub("", text)
    text = strip_mentions(text)
    text = _URL.sub(_autolink if keep_urls else (lambda m: " "), text)
    text = strip_hashtag_marks(text)
    text = strip_emoji(text)
    text = _tidy(text)
    text = strip_dm_handoffs(text, role)
    text = _tidy(strip_openings(text, role))
    text = _tidy(strip_closings(_drop_name_line(text, role), role))
    text = _drop_name_line(text, role)
    return text


def clean_post_text(text: str, role: Role) -> str:
    """The cleaned, single-line text of one post (what matching and clustering read)."""
    cleaned = _clean_lines(text, role, keep_urls=False)
    one_line = _HSPACE.sub(" ", cleaned.replace("\n", " ")).strip()
    return _SPACE_AFTER_JA.sub("", one_line)


def clean_post(text: str) -> str:
    """The words of one customer post as every part of the service reads them.

    The one cleaner of capture, suggest, public search and `faqloop eval`: mentions (handles
    and display names, with honorifics), URLs, hashtag marks, emoji, greetings, closings,
    signatures and DM notes removed; one line.
    """
    return clean_post_text(text, "customer")


def clean_customer_text(text: str) -> str:
    """A customer's post without mentions, links, emoji, greetings and closings."""
    return clean_post_text(text, "customer")


def clean_agent_text(text: str) -> str:
    """An agent's post without greetings, introduction, sign-off, signature and DM hand-off."""
    return clean_post_text(text, "agent")


_LIST_ITEM = re.compile(r"^\s*(?:\((\d{1,2})\)|(\d{1,2})[.)、]|[・•●▶▷■□◆◇-])\s*")
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|])")


def _markdown_line(line: str) -> str:
    m = _LIST_ITEM.match(line)
    # Escape what Markdown would read as markup; URLs were wrapped in <...> before.
    parts = re.split(r"(<https?://[^>]+>|<www\.[^>]+>)", line[m.end() :] if m else line)
    body = "".join(p if p.startswith("<") else _MD_SPECIAL.sub(r"\\\1", p) for p in parts)
    body = re.sub(r"^([#>+])", r"\\\1", body)
    if m is None:
        return body
    number = m.group(1) or m.group(2)
    return f"{number}. {body}" if number else f"- {body}"


def agent_reply_markdown(texts: Iterable[str]) -> str:
    """An agent's replies as one Markdown answer: cleaned, links kept, lists kept, paragraphs.

    Links are what an answer often hinges on ("こちらの手順をご覧ください: <url>"), so unlike
    the matching text they stay, as autolinks.
    """
    paragraphs = []
    for raw in texts:
        cleaned = _clean_lines(raw, "agent", keep_urls=True)
        if not cleaned:
            continue
        lines = [_markdown_line(_SPACE_AFTER_JA.sub("", line)) for line in cleaned.split("\n")]
        block: list[str] = []
        for line in lines:
            if not line:
                if block:
                    paragraphs.append(_join_block(block))
                    block = []
                continue
            block.append(line)
        if block:
            paragraphs.append(_join_block(block))
    return "\n\n".join(p for p in paragraphs if p.strip())


def _join_block(lines: list[str]) -> str:
    # Consecutive list items stay one list; other lines of one block keep their breaks.
    is_item = [bool(re.match(r"^(?:\d{1,2}\. |- )", line)) for line in lines]
    out = []
    for i, line in enumerate(lines):
        if i and is_item[i] and not is_item[i - 1]:
            out.append("")  # a list needs a blank line before it
        out.append(line)
    return "  \n".join(out) if not any(is_item) else "\n".join(out)


# A sentence that only holds the customer off: "we'll look into it", "確認いたします",
# "少々お待ちください", "let me check". A reply made only of these answers nothing.
_HOLDING = re.compile(
    r"^\s*(?:(?:we'?ll|we will|i'?ll|i will|let me|let us|we'?re|we are|i'?m|i am|we'?d|i'?d)"
    r"\s+(?:be\s+)?(?:(?:happy|glad)\s+to\s+)?(?:look(?:ing)?\s+into|check(?:ing)?|investigat\w*"
    r"|get(?:ting)?\s+back|follow(?:ing)?\s+up|escalat\w*|pass(?:ing)?\s+(?:this|it)\s+on"
    r"|take\s+a\s+look|have\s+a\s+look|reach\s+out|update\s+you|keep\s+you\s+posted)"
    r"|.*?"
    + _DM_TERM
    + r"|(?:please\s+)?(?:bear with us|hang tight|stay tuned|give us a moment|one moment)"
    r"|(?:please\s+)?(?:send|share|tell|give)\s+(?:us|me)\s+(?:your|the|a|more|some)\b"
    r"|(?:担当(?:部署|者)?(?:に|へ)|社内で|こちらで|確認して|お調べ|調査)[^。!?]{0,30}?"
    r"(?:確認|調査|共有|お調べ|ご連絡|お知らせ|回答|ご案内)?(?:いた|致)?(?:します|いたします|致します"
    r"|しております|中です|させていただきます|いただけますか)"
    r"|[^。!?]{0,20}?(?:確認|調査|お調べ)(?:いた|致)?(?:します|いたします|致します|中です"
    r"|させていただきます)"
    r"|(?:少々|しばらく|今しばらく)(?:お時間を(?:いただけますと幸いです|ください))?お待ち(?:ください|下さい"
    r"|いただけますか|いただけますでしょうか)"
    r"|(?:詳しい|詳細な)?(?:状況|内容|お名前|ご契約|お電話番号|機種)[^。!?]{0,30}?"
    r"(?:お知らせ|教えて|お送り)(?:ください|いただけますか|いただけますでしょうか)"
    r")",
    re.IGNORECASE,
)
_WORD_CHAR = re.compile(r"\w")


def is_substantive_answer(text: str) -> bool:
    """Whether an agent's cleaned reply answers anything.

    Greetings, sign-offs, signatures and DM hand-offs are gone after cleaning; what is left
    must hold at least one sentence that is not a holding line ("we'll look into it",
    "確認いたします", "少々お待ちください", "please send us your ...") and has words.
    """
    for line in text.split("\n"):
        for sentence in split_sentences(line):
            words = sentence.strip(" -*>#0123456789.)")
            if len(_WORD_CHAR.findall(words)) >= 2 and not _HOLDING.search(words):
                return True
    return False


# --------------------------------------------------------------------------------------
# Threads
# --------------------------------------------------------------------------------------

MAX_QUESTION_CHARS = 500


def shorten(text: str, limit: int = MAX_QUESTION_CHARS) -> str:
    """At most `limit` characters, cut after the last full sentence that fits."""
    if len(text) <= limit:
        return text
    kept = ""
    for sentence in split_sentences(text):
        if len(kept) + len(sentence) > limit:
            break
        kept += sentence
    return (kept or text[:limit]).strip()


def customer_question(posts: Sequence[tuple[str, str]]) -> str:
    """The customer's question from (role, cleaned text) pairs in thread order.

    The customer's posts before the first agent reply carry the question (a later "thanks!"
    does not); when the agent spoke first, the customer's first post counts.
    """
    before_agent: list[str] = []
    for role, text in posts:
        if role == "agent":
            break
        if text:
            before_agent.append(text)
    if not before_agent:
        before_agent = [t for r, t in posts if r == "customer" and t][:1]
    return shorten(join_texts(before_agent))


_JA_END = re.compile(rf"[{_KANA_HAN}。、!?」』)]$")


def join_texts(parts: Sequence[str]) -> str:
    """Join cleaned posts: Japanese after Japanese needs no space, anything else one."""
    out = ""
    for part in parts:
        if not part:
            continue
        out = (
            part
            if not out
            else out + ("" if _JA_END.search(out) and not part.isascii() else " ") + part
        )
    return out


def pseudonymize(handle: str, secret: str) -> str:
    """HMAC-SHA256 of the normalised handle (64 hex characters); "" for no handle.

    Keyed, so nobody without the secret can confirm a guess of who wrote a post.
    """
    norm = unicodedata.normalize("NFKC", handle).strip().lstrip("@").casefold()
    if not norm:
        return ""
    return hmac.new(secret.encode(), norm.encode(), hashlib.sha256).hexdigest()
