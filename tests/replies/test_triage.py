"""Triage: reply to questions and problems, thank for thanks and praise, and stay out of
customers' conversations with each other — in Japanese and English, many phrasings."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from kb.models import TriageAdvice
from kb.replies.triage import addressed_users, triage_post

BRAND = {
    "brand_handles": ["SoramiMobile"],
    "brand_names": ["Sorami Mobile", "ソラミモバイル"],
}
CASES = yaml.safe_load((Path(__file__).parents[1] / "data" / "suggest_cases.yaml").read_text())

PROBLEMS = [
    "@SoramiMobile my esim won't activate",
    "@SoramiMobile can't make calls since this morning",
    "@SoramiMobile data is so slow today, ugh",
    "@SoramiMobile keeps dropping my calls",
    "@SoramiMobile no signal at all in Shibuya",
    "@SoramiMobile I was charged twice this month",
    "@SoramiMobile the app shows an error when I log in",
    "@SoramiMobile thanks, but it still doesn't work",
    "@SoramiMobile my parcel never arrived",
    "@ソラミモバイル 機種変更したらテザリングできない",
    "@ソラミモバイル eSIMが開通しない…QRコード読んだのに😭",
    "@ソラミモバイル 朝から圏外です",
    "@ソラミモバイル 通信が遅すぎる",
    "@ソラミモバイル 請求が二重になってる",
    "@ソラミモバイル エラーが出てログインできません",
    "@ソラミモバイル 対応ありがとうございます。でもまだ繋がらないです",
    "@ソラミモバイル SMSが届かない",
    "@ソラミモバイル スマホなくした…",
]
QUESTIONS = [
    "@SoramiMobile how do I set up esim on a pixel?",
    "@SoramiMobile is there a daily pass for Korea?",
    "@SoramiMobile what's the cancellation fee",
    "@SoramiMobile can I keep my number if I switch?",
    "@SoramiMobile where do I find my PUK code",
    "@ソラミモバイル 海外でも使えますか",
    "@ソラミモバイル 解約金はかかりますか？",
    "@ソラミモバイル プラン変更の方法を教えてください",
    "@ソラミモバイル 領収書ってどこから出せる？",
    "@ソラミモバイル いつから新しいプランになるの",
    "@ソラミモバイル 支払い方法を知りたい",
]
THANKS = [
    ("@SoramiMobile thank you so much, the esim works now!! 🙏", "resolved"),
    ("@SoramiMobile fixed, thanks a lot!", "resolved"),
    ("@SoramiMobile just wanted to say your support team is amazing", "praise"),
    ("@SoramiMobile love the new 5G coverage in Osaka", "praise"),
    ("@SoramiMobile thanks for the quick help yesterday", "thanks"),
    ("Sorami Mobile has the best support, honestly impressed", "praise"),
    ("@ソラミモバイル 神対応ありがとうございました！", "thanks"),
    ("@ソラミモバイル 解決しました、ありがとうございます！", "resolved"),
    ("@ソラミモバイル 繋がりました！助かりました", "resolved"),
    ("@ソラミモバイル 問題なく使えてます、快適です", "praise"),
    ("@ソラミモバイル いつも丁寧な対応に感謝しています", "thanks"),
    ("ソラミモバイル、速くて最高", "praise"),
]
USERS_TALKING = [
    "@taro_y you should switch to Sorami, my bill halved",
    "@kenji did your sorami esim ever start working?",
    "@mika_88 lol same, my sorami data was slow yesterday too",
    "@hanako ソラミにしなよ、安いよ",
    "@taro_yさん ソラミモバイルってeSIMすぐ使えた？",
    "@yuki 私もソラミだけど電波いいよ",
]
RECOMMENDATIONS = [
    "Everyone should switch to Sorami honestly, best decision ever",
    "If you're looking for a cheap plan, I recommend Sorami Mobile",
    "Give Sorami a try, you won't regret it",
    "ソラミモバイルおすすめだよ！乗り換えたら月3000円安くなった",
    "格安SIMならソラミ一択",
    "みんなもソラミに乗り換えたらいいのに",
]
CHATTER = ["lunch was great today", "今日は暑いね", "good morning everyone!", "焼肉食べたい"]


def _advice(text: str, matched: bool = False) -> tuple[TriageAdvice, str]:
    t = triage_post(text, matched=matched, **BRAND)  # type: ignore[arg-type]
    assert t.reason
    return t.advice, t.kind


def test_every_customer_post_of_the_suggest_table_gets_a_reply() -> None:
    # 80 real-style posts (questions and problems, ja and en), with no FAQ match assumed.
    wrong = [c["text"] for c in CASES if _advice(c["text"])[0] != TriageAdvice.reply]
    assert wrong == []


@pytest.mark.parametrize("text", PROBLEMS)
def test_problems_get_a_reply(text: str) -> None:
    assert _advice(text) == (TriageAdvice.reply, "problem")


@pytest.mark.parametrize("text", QUESTIONS)
def test_questions_get_a_reply(text: str) -> None:
    advice, kind = _advice(text)
    assert advice == TriageAdvice.reply and kind in ("question", "problem", "request")


@pytest.mark.parametrize(("text", "kind"), THANKS)
def test_thanks_and_praise_get_a_thank_you(text: str, kind: str) -> None:
    assert _advice(text, matched=True) == (TriageAdvice.thank, kind)


@pytest.mark.parametrize("text", USERS_TALKING)
def test_customers_talking_among_themselves_are_not_interrupted(text: str) -> None:
    assert _advice(text, matched=True) == (TriageAdvice.skip, "users_talking")


@pytest.mark.parametrize("text", RECOMMENDATIONS)
def test_customers_recommending_to_each_other_are_not_interrupted(text: str) -> None:
    assert _advice(text, matched=True) == (TriageAdvice.skip, "recommendation")


@pytest.mark.parametrize("text", CHATTER)
def test_chatter_without_a_match_is_skipped(text: str) -> None:
    assert _advice(text) == (TriageAdvice.skip, "unclear")


def test_a_post_without_cues_is_answered_when_a_faq_matches_or_it_is_addressed() -> None:
    text = "roaming in Korea next week, Sorami Mobile"
    assert _advice(text, matched=True) == (TriageAdvice.reply, "unclear")
    assert _advice(text, matched=False) == (TriageAdvice.skip, "unclear")
    # Written to the brand, a report in words no cue knows still gets an agent.
    text = "@SoramiMobile the QR code page shows a grey square"
    assert _advice(text) == (TriageAdvice.reply, "unclear")
    assert _advice("@SoramiMobile 🙂") == (TriageAdvice.skip, "unclear")


@pytest.mark.parametrize(
    "text",
    [
        "@SoramiMobile your app crashes on startup, Android 14",
        "@SoramiMobile great, another outage, thanks a lot",
        "@SoramiMobile still not working",
        "@SoramiMobile 繋がらない",
        "@SoramiMobile 使えない",
    ],
)
def test_complaints_without_a_question_get_a_reply(text: str) -> None:
    assert _advice(text)[0] == TriageAdvice.reply


def test_a_user_who_asks_others_and_the_brand_gets_a_reply() -> None:
    assert _advice("@kenji @SoramiMobile my esim won't activate either") == (
        TriageAdvice.reply,
        "problem",
    )


def test_the_brand_is_recognised_by_handle_and_by_name() -> None:
    to_brand, others = addressed_users("@soramimobile @taro hi", ["SoramiMobile"])
    assert to_brand and others == ["taro"]
    to_brand, others = addressed_users("@ソラミモバイル 質問です", [], ["ソラミモバイル"])
    assert to_brand and others == []
    to_brand, others = addressed_users("@hanakoさん こんにちは", ["SoramiMobile"], ["ソラミ"])
    assert not to_brand and others == ["hanako"]


def test_the_reason_names_the_cue() -> None:
    t = triage_post("@SoramiMobile 機種変更したらテザリングできない", **BRAND)  # type: ignore[arg-type]
    assert t.cue == "できない" and "できない" in t.reason
    t = triage_post("@taro_y you should switch to Sorami", **BRAND)  # type: ignore[arg-type]
    assert "@taro_y" in t.reason


def test_suggest_reports_the_triage(client: TestClient, agent_headers: dict[str, str]) -> None:
    expected = {
        "@SoramiMobile my esim won't activate after scanning the QR 😭": "reply",
        "@SoramiMobile 解決しました、ありがとうございます！": "thank",
        "@taro_y you should switch to Sorami, my bill halved": "skip",
    }
    for text, advice in expected.items():
        body = client.post("/v1/suggest", json={"text": text}, headers=agent_headers).json()
        assert body["triage"]["advice"] == advice and body["triage"]["reason"]
        if advice == "skip":
            assert body["reply"] is None
        if advice == "thank":
            assert body["reply"]["kind"] == "thanks" and "http" not in body["reply"]["text"]
