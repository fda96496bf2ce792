"""Should an agent reply to a post at all? A bilingual, rule-based hint with its reason.

- **reply**: the post asks a question or reports a problem ("esim won't activate",
  "開通しない", "how do I…?", "どうすれば…").
- **thank**: thanks or praise, or news that the problem is solved ("thanks, works now!",
  "解決しました、ありがとうございます"): a short thank-you without a link.
- **skip**: customers talking among themselves (they address other users and not the
  brand) or recommending the brand to each other ("you should switch to Sorami",
  "ソラミにしなよ、安いよ"): the brand does not interrupt.

Problems win over thanks ("thanks, but it still won't connect" needs a reply); a post with
none of the cues gets a reply only when a FAQ matched it confidently.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from indexer.lexical.scripts import HAN, HEXAGRAMS, KANA, KANJI
from kb.models import TriageAdvice

# -- cues ----------------------------------------------------------------------------------

_EN_QUESTION = re.compile(
    r"\?|(?:^|[.!,;:]\s*|\n)\s*(?:how|what|what's|whats|why|when|where|which|who|whom|whose"
    r"|can|could|should|would|will|is|are|am|do|does|did|have|has|may|might|shall"
    r"|anyone know|any (?:way|idea|ideas|chance|update|news)|is there|are there)\b"
    r"|\b(?:wondering|not sure (?:how|if|whether|why)|i need to know|please (?:advise|explain|tell)"
    r"|let me know (?:how|if|when|why)|how (?:do|can|to)|what (?:do|should) i)\b",
    re.IGNORECASE,
)
_JA_QUESTION = re.compile(
    r"[?？]|(?:です|ます|でしょう|ません|できる|できます|ある|あります|いい|良い|よい|いつ|なぜ|何|どこ"
    r"|どれ|どう)か(?:[。.!！…、\s]|ね|な|$)|(?:のでしょうか|んでしょうか|ですかね|かな|かしら)"
    r"|教えて|どうすれば|どうやって|どうしたら|どうしたらいい|どうなって|どうなる|いつ(?:から|まで|頃|ごろ)"
    r"|なぜ|なんで|何故|知りたい|方法(?:は|が|を)|わからない|分からない|わかりません|分かりません"
    r"|どこ|どれ|どの|どうやって|どうすれ|どうしたら|いつ(?!も)|いくら|誰"
)
# Wishes and requests ("I'd like to cancel", "取り消したい"): a reply when a FAQ matches.
_REQUEST = re.compile(
    r"\b(?:i (?:want|wanna|need|would like|'d like|am trying|'m trying) to|trying to|i'?d like to"
    r"|looking (?:for|to)|planning to|thinking of|is it possible)\b"
    r"|(?:し|り|き|え|め|け|せ|れ|み|び|ち|い|ぎ|わ)たい(?:です|んです|のですが|んだけど|けど|な|[。!?…、\s]|$)"
    r"|(?:ください|下さい|ほしい|欲しい|お願いします)",
    re.IGNORECASE,
)
_EN_PROBLEM = re.compile(
    r"\b(?:can'?t|cannot|can not|couldn'?t|won'?t|wont|doesn'?t|doesnt|don'?t|didn'?t|isn'?t"
    r"|aren'?t|wasn'?t|haven'?t|hasn'?t|not (?:working|loading|connecting|arriving|showing|able)"
    r"|stopped working|no (?:signal|service|data|internet|bars|connection)|unable|broken|broke"
    r"|error|errors|fail|fails|failed|failing|issue|issues|problem|problems|trouble|stuck|glitch"
    r"|bug|outage|down|slow|slower|crawling|keeps? (?:dropping|crashing|failing|asking)"
    r"|dropped|dropping|missing|lost|never (?:arrived|came|got)|charged (?:twice|double)"
    r"|overcharged|double charged|declined|locked out|frozen|disconnect(?:ed|s|ing)?"
    r"|please help|help me|need help|any help|ugh|annoying|frustrat\w*|terrible|worst"
    r"|nothing (?:loads|works|happens|helps|shows|changed)|never (?:shows?|comes?|came|arrives?"
    r"|arrived|got|gets|works?|worked)|neither|none of|no luck|forever|keeps? saying"
    r"|ridiculous|useless|awful|angry|unacceptable|refund|wrong"
    r"|crash\w*|freez\w*|froze|invalid|on hold|supposed to|drops?|logs? me out|deleted|slower"
    r"|silence|disappeared|vanished|no bars|zero bars|not provisioned|nothing yet|still waiting"
    r"|thanks for nothing|unbelievable|again\W*$)\b",
    re.IGNORECASE,
)
_JA_PROBLEM = re.compile(
    r"(?:でき|出来|つながら|繋がら|使え|届か|入ら|読め|開か|動か|映ら|押せ|送れ|受け取れ|見れ|見られ"
    r"|反映され|表示され|開通し|通じ|かから|掛から|ログインでき|認識し|切り替わら|進ま|終わら|来)"
    r"(?:ない|ません|なくて|なくなった|なくなりました|ず)"
    rf"|(?<=[{KANA}{KANJI}])(?:[らかがさたなばまわえけせてねべめれ]ない|[らかがさたなばまわ]なくて)"
    r"|出ない|出なく|しない|しません|しなくて|圏外|遅い|遅すぎ|重い|エラー|不具合|障害|おかしい|困って"
    r"|困った|困る|わからん|分からん|わかんない|分かんない|なくした|無くした|失くした|紛失|落とした"
    r"|盗まれ|間違え|まちがえ|ミスった|ミスして|なくなる|落ちる|落ちた|落ちます|途切れ|届いてません"
    r"|壊れ|失敗|止まった|止まる|切れる|切れた|途切れ|二重|高すぎ|高い|最悪|ひどい|酷い|勝手に|消えた"
    r"|無くなった|なくなった|届いてない|届いていない|来ない|こない|返金|請求が|引き落とし|バグ|固まる"
    r"|助けて|なんとかして|何とかして|ありえない|あり得ない|許せない|怒"
)
# Problems, questions, thanks and spam in the other languages posts come in (zh, ko, es, fr,
# de, pt, th, vi, id): the common words, as customers type them (accents often left out).
_OTHER_PROBLEM = re.compile(
    # zh
    r"不了|不能|无法|無法|没有信号|沒有信號|没信号|断线|斷線|太慢|很慢|闪退|閃退|打不开|打不開|收不到"
    r"|重复扣费|重複扣費|扣费|不对|不對|故障|错误|錯誤|用不了"
    # ko
    r"|안 ?돼|안 ?되|안 ?터|안 ?와|안 ?열|꺼져|느려|끊겨|끊어|오류|에러"
    r"|두 번|빠져나갔|문제"
    # th
    r"|ไม่ได้|ช้ามาก|หลุด|ซ้ำ|เสีย|ไม่มีสัญญาณ"
    # es, pt, fr, de, vi, id (word-bounded below)
    r"|(?i:\b(?:no funciona|sin (?:señal|senal|datos|internet|servicio)"
    r"|no (?:tengo|me llega|abre|puedo)"
    r"|se cierra|sigue sin|lent[oa]|lentísimo|lentisimo|cobraron|error|falla|caído|caido"
    r"|não (?:funciona|abre|consigo|chega)|sem sinal|cobrad[oa]|travando|fecha sozinho"
    r"|ne (?:marche|fonctionne|reçois|recois)|plus de (?:réseau|reseau)|plante|coupent|factur[ée]"
    r"|pas de connexion|toujours pas|panne|bug"
    r"|kein(?:e|en)? (?:netz|internet|empfang|signal)|geht nicht|funktioniert nicht"
    r"|stürzt|abgebucht"
    r"|langsam|fehler|störung"
    r"|không (?:được|vào|có|nhận|gọi)|mất sóng|bị trừ|chậm|lỗi|rớt"
    r"|tidak (?:bisa|ada|masuk|berfungsi)|hilang|lambat|ditagih|gangguan|keluar sendiri|error)\b)"
)
_OTHER_QUESTION = re.compile(
    r"吗|嗎|怎么|怎麼|如何|什么|什麼|哪里|哪裡|多少|能否|可以.{0,12}吗|请问|請問"
    r"|나요|까요|어요\?|어떻게|얼마|언제|어디|있나요|되나요|걸려요"
    r"|ไหม|ยังไง|อย่างไร|เท่าไหร่|ที่ไหน|หรือเปล่า"
    r"|(?i:\b(?:cómo|como|cuánto|cuanto|dónde|donde|cuándo|comment|combien|où|quand|est-ce que"
    r"|wie|wo|wann|was kostet|kann ich|gibt es|quanto|onde|quando|làm sao|bao nhiêu|ở đâu|không\?"
    r"|bagaimana|berapa|di mana|kapan|bisa .{0,30}\?)\b)"
)
_OTHER_THANKS = re.compile(
    r"谢谢|謝謝|感谢|感謝|多谢|已经解决|已經解決|解决了|解決了|太好了"
    r"|감사|고마워|고맙|해결됐|해결되었"
    r"|ขอบคุณ|ใช้ได้แล้ว"
    r"|(?i:\b(?:gracias|ya funciona|merci|ça marche|ca marche|danke|funktioniert jetzt|klappt"
    r"|obrigad[oa]|valeu|resolvido|funcionou|cảm ơn|cám ơn|được rồi|terima kasih|sudah bisa)\b)"
)
_SPAM = re.compile(
    r"(?i:\b(?:earn \$?\d+|make money|free followers|buy followers|follow ?back|followforfollow"
    r"|f4f|giveaway|send \d+(?:\.\d+)? ?(?:btc|eth)|crypto|click (?:here|my)"
    r"|check my (?:bio|profile)"
    r"|link in (?:my )?bio|hot singles|whatsapp \+?\d|claim your (?:prize|reward)"
    r"|gana dinero|link en bio|gagnez|lien dans (?:la|ma) bio|ganhe dinheiro|uang jutaan"
    r"|link di bio)\b)"
    r"|副業|日給|月\d+万|フォロバ|相互フォロー|プレゼント中|今すぐクリック|拡散希望|プロフのリンク"
    r"|詳しくはプロフ|日赚|加微信|免费领取|点击主页|부업|프로필 링크|기프티콘"
)


# "Thanks for telling me": 教えて is a request only without these.
_TOLD = re.compile(r"教えて(?:くれ|くださ(?:り|っ)|いただ|頂)")

# Negations that are good news ("問題ない", "no problem", "not bad").
_GOOD_NEGATION = re.compile(
    r"問題(?:は)?(?:ない|なく|ありません)|申し分(?:ない|ありません)|文句(?:なし|ない)|悪くない"
    r"|不満(?:は)?(?:ない|ありません)|心配(?:ない|いらない)|間違いない|言うことない"
    r"|\bno (?:problem|problems|issue|issues|complaints)\b|\bnot bad\b|\bcan'?t complain\b"
    r"|\bcouldn'?t be happier\b|\bno more (?:issues|problems|drops)\b"
    r"|\bnever had (?:a|any) (?:problem|issue)s?\b|\b(?:won'?t|will not|never|don'?t) regret\b"
    r"|\bcan'?t (?:recommend \w+ enough|believe how (?:cheap|fast|good))\b",
    re.IGNORECASE,
)
_EN_THANKS = re.compile(
    r"\b(?:thank(?:s| you| u)?|thx|ty|tysm|appreciate(?:d)?|cheers|grateful|kudos)\b",
    re.IGNORECASE,
)
_JA_THANKS = re.compile(r"ありがと|有難う|有り難う|感謝|助かりました|助かった|助かります|お礼")
_EN_PRAISE = re.compile(
    r"\b(?:love|loving|great|awesome|amazing|excellent|fantastic|brilliant|perfect|superb"
    r"|impressed|well done|so good|so fast|super fast|best (?:carrier|service|support|network)"
    r"|happy with|pleased|recommend\w*|the best|five stars|5 stars|shout ?out)\b",
    re.IGNORECASE,
)
_JA_PRAISE = re.compile(
    r"最高|素晴らしい|すばらしい|すごい|凄い|神対応|神|満足|快適|いい感じ|良い感じ|大好き|さすが|流石|最強"
    r"|おすすめ|オススメ|お勧め|お薦め|安くて|速くて|早くて|丁寧|親切|感動|嬉しい|うれしい"
)
_RESOLVED = re.compile(
    r"\b(?:fixed|works now|working now|working again|works again|resolved|sorted(?: out)?|solved"
    r"|all good|back (?:up|online|to normal)|figured it out|got it working|it worked|that worked)\b"
    r"|直りました|直った|治りました|解決しました|解決した|解決です|復旧しました|復旧した|つながりました"
    r"|繋がりました|できました|出来ました|使えるようになりました|使えるようになった|届きました",
    re.IGNORECASE,
)
# Telling other people to join: the brand should not jump into that conversation.
_EN_RECOMMEND = re.compile(
    r"\b(?:you (?:should|gotta|have to|must|need to) (?:switch|try|get|go with|join|move|check)"
    r"|(?:i |i'd |would |highly |totally |definitely )recommend|switch(?:ing)? to (?!\w+ plan)"
    r"|go with|give \w+ a try|try (?:them|it) out|check (?:them|it) out|you won'?t regret"
    r"|if you(?:'re| are) (?:looking|thinking)|everyone should|y'?all should|join (?:me|us) on)\b",
    re.IGNORECASE,
)
_JA_RECOMMEND = re.compile(
    r"おすすめ(?:だよ|です|する|します|！|!)|オススメ(?:だよ|です|する|します|！|!)|お勧め(?:だよ|です|する)"
    r"|乗り換え(?:たら|るといい|なよ|た方が|るべき|ちゃえ)|にしなよ|にしたら(?:いい|安|良)|にすれば"
    r"|使ってみて|使ってみなよ|一択|がいいよ|の方がいいよ|安くなったよ|変えたら|変えなよ|にしようよ"
    r"|みんな(?:も)?(?:使|乗り換|変え)"
)

# ASCII handles (X, Instagram), or the brand's name typed as a handle in kana or kanji.
_MENTION = re.compile(rf"(?<![\w@])@([A-Za-z0-9_]{{1,50}}|[{KANA}{HAN}{HEXAGRAMS}]{{1,50}})")
_REPLYING_TO = re.compile(r"^\s*(?:replying to|返信先\s*[:：]?)\s*((?:@\w+[\s,]*)+)", re.I)


@dataclass(frozen=True)
class Triage:
    """The advice for one post, what kind of post it is, and the words that decided it."""

    advice: TriageAdvice
    kind: str  # question, problem, thanks, praise, resolved, users_talking, recommendation, unclear
    reason: str
    cue: str | None = None


def _first(patterns: Iterable[re.Pattern[str]], text: str) -> str | None:
    for pattern in patterns:
        m = pattern.search(text)
        if m:
            return m.group(0).strip(" \n.,!。、") or m.group(0)
    return None


def _without(pattern: re.Pattern[str], text: str) -> str:
    return pattern.sub(" ", text)


def _squash(text: str) -> str:
    return re.sub(r"[\s_\-・]", "", unicodedata.normalize("NFKC", text)).casefold()


def _substance(body: str) -> bool:
    """At least three words, or eight letters of a script without spaces (CJK, Thai)."""
    words = re.findall(r"[^\W\d_]+", body)
    if len(words) >= 3:
        return True
    return sum(1 for ch in body if ch.isalpha() and ord(ch) > 0x2E80) >= 8


def addressed_users(
    text: str, brand_handles: Iterable[str], brand_names: Iterable[str] = ()
) -> tuple[bool, list[str]]:
    """Whether the post mentions the brand, and the other handles it names.

    A handle is the brand's when it is one of `brand_handles` or contains one of
    `brand_names` (customers type @ソラミモバイル as often as the real handle).
    """
    handles_ok = {_squash(h.lstrip("@")) for h in brand_handles if h.strip()}
    names = [_squash(n) for n in brand_names if n.strip()]

    def is_brand(handle: str) -> bool:
        h = _squash(handle)
        # @SoramiMobileJP, @ソラミモバイル公式, or a shortened @ソラミ
        return h in handles_ok or any(n and (n in h or (len(h) >= 3 and h in n)) for n in names)

    handles = [m.group(1) for m in _MENTION.finditer(text)]
    to_brand = any(is_brand(h) for h in handles)
    others = [h for h in handles if not is_brand(h)]
    return to_brand, others


def names_brand(text: str, brand_names: Iterable[str]) -> bool:
    """Whether the text names the brand (case, width and spaces ignored)."""
    squashed = _squash(text)
    return any(_squash(n) and _squash(n) in squashed for n in brand_names)


def triage_post(
    text: str,
    *,
    brand_handles: Iterable[str] = (),
    brand_names: Iterable[str] = (),
    matched: bool = False,
) -> Triage:
    """Advise reply, thank or skip for a post; `matched` says a FAQ fitted it confidently."""
    brand_names = tuple(brand_names)
    norm = unicodedata.normalize("NFKC", text)
    to_brand, others = addressed_users(norm, brand_handles, brand_names)
    body = _MENTION.sub(" ", norm)
    # Good-news negations ("問題ない", "no problems") must not read as problems.
    scan = _without(_GOOD_NEGATION, body)
    question = _first((_EN_QUESTION, _JA_QUESTION), scan)
    problem = _first((_EN_PROBLEM, _JA_PROBLEM), scan)
    thanks = _first((_EN_THANKS, _JA_THANKS), scan)
    praise = _first((_EN_PRAISE, _JA_PRAISE), scan)
    resolved = _first((_RESOLVED,), scan)
    recommend = _first((_EN_RECOMMEND, _JA_RECOMMEND), scan)
    problem = problem or _first((_OTHER_PROBLEM,), scan)
    question = question or _first((_OTHER_QUESTION,), scan)
    thanks = thanks or _first((_OTHER_THANKS,), scan)
    spam = _first((_SPAM,), scan)
    request = _first((_REQUEST,), scan)
    # Praise of lunch is not praise of the brand: it must be addressed or named.
    about_brand = to_brand or names_brand(body, brand_names)

    if spam and not (to_brand and question and "?" in question):
        return Triage(
            TriageAdvice.skip,
            "spam",
            f"spam or self-promotion ({spam!r}): do not reply",
            spam,
        )
    if others and not to_brand:
        names = ", ".join("@" + h for h in others[:3])
        return Triage(
            TriageAdvice.skip,
            "users_talking",
            f"customers talking among themselves ({names}, the brand is not addressed): "
            "do not interrupt",
            names,
        )
    if recommend and not to_brand and not problem and not question:
        return Triage(
            TriageAdvice.skip,
            "recommendation",
            f"a customer recommending the brand to others ({recommend!r}): do not interrupt",
            recommend,
        )
    if resolved and (thanks or praise) and not (question and "?" in question):
        return Triage(
            TriageAdvice.thank,
            "resolved",
            f"the problem is solved and the customer says thanks ({resolved!r}): "
            "a short thank-you, no link",
            resolved,
        )
    if thanks and not problem and not request and (not question or _TOLD.search(scan)):
        kind = "resolved" if resolved else "thanks"
        return Triage(
            TriageAdvice.thank,
            kind,
            f"thanks for the brand ({thanks!r}): a short thank-you, no link",
            thanks,
        )
    if problem:
        return Triage(
            TriageAdvice.reply,
            "problem",
            f"reports a problem ({problem!r}): reply with the FAQ",
            problem,
        )
    if question:
        return Triage(
            TriageAdvice.reply,
            "question",
            f"asks a question ({question!r}): reply with the FAQ",
            question,
        )
    if request and (matched or to_brand):
        return Triage(
            TriageAdvice.reply,
            "request",
            f"asks for something ({request!r}): reply with the FAQ",
            request,
        )
    if thanks or (praise and about_brand) or (recommend and to_brand):
        cue = thanks or praise or recommend
        kind = "thanks" if thanks else "praise"
        return Triage(
            TriageAdvice.thank,
            kind,
            f"{'thanks' if thanks else 'praise'} for the brand ({cue!r}): a short thank-you, "
            "no link",
            cue,
        )
    if resolved and about_brand:
        return Triage(
            TriageAdvice.thank,
            "resolved",
            f"the problem is solved ({resolved!r}): a short thank-you, no link",
            resolved,
        )
    if matched:
        return Triage(
            TriageAdvice.reply,
            "unclear",
            "no question or problem words, but a FAQ matches the post well: reply",
        )
    if to_brand and _substance(body):
        # Customers write to the brand to report something far more often than to chat; a
        # report in words no cue knows ("QR code says invalid") still needs an agent.
        return Triage(
            TriageAdvice.reply,
            "unclear",
            "addressed to the brand, no thanks or praise, and no FAQ matches: "
            "probably a report in other words; an agent should reply",
        )
    return Triage(
        TriageAdvice.skip,
        "unclear",
        "no question, problem, thanks or praise found and no FAQ matches: nothing to answer",
    )
