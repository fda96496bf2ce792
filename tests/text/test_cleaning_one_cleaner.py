"""The one cleaner (kb.text.cleaning.clean_post): every mention form, links, hashtags,
greetings, closings and signatures, in Japanese, English, Chinese and Korean; and every
reader of a customer's post (capture, suggest, site search, eval) uses it."""

from __future__ import annotations

import pytest

from kb.suggest.evaluation import query_text
from kb.text import cleaning, language
from kb.text.cleaning import clean_agent_text, clean_post, strip_mentions


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        # ASCII handles, glued Japanese, Instagram dots, honorifics
        ("@docomo_care 解約金はかかりますか?", "解約金はかかりますか?"),
        ("@UQ_mobile_Care機種変更の予約はできますか", "機種変更の予約はできますか"),
        ("@kaori.t さん、写真の容量はいくつまでですか", "写真の容量はいくつまでですか"),
        ("@Ken_S 様 iPhoneの初期設定がわかりません", "iPhoneの初期設定がわかりません"),
        # non-ASCII display names (Instagram, Facebook, LINE), with and without honorifics
        ("@サポート デザリングの上限は?", "デザリングの上限は?"),
        ("@ソラミモバイル公式 海外で使えますか", "海外で使えますか"),
        ("@小林さん 請求書はどこで見られますか", "請求書はどこで見られますか"),
        ("@小林さん、請求書はどこで見られますか", "請求書はどこで見られますか"),
        ("@山田太郎様 eSIMへの切り替え方法は", "eSIMへの切り替え方法は"),
        ("@高橋殿 契約者の名義変更をしたい", "契約者の名義変更をしたい"),
        ("@ゆうきくん 通信量の確認方法", "通信量の確認方法"),
        ("@みさきちゃん SIMロック解除ってどうやるの", "SIMロック解除ってどうやるの"),
        ("@김민수 요금제를 바꾸고 싶어요", "요금제를 바꾸고 싶어요"),
        ("@김민수 님 요금제를 바꾸고 싶어요", "요금제를 바꾸고 싶어요"),
        ("@李明 怎么查询剩余流量", "怎么查询剩余流量"),
        ("@Élodie_Support est-ce que l'eSIM marche", "est-ce que l'eSIM marche"),
        # several mentions, "Replying to" lines
        ("@sorami @サポート @小林さん 留守電の設定は?", "留守電の設定は?"),
        ("Replying to @SoramiMobile\nhow do I turn off voicemail?", "how do I turn off voicemail?"),
        # links (http, www, with query strings)
        (
            "ここ見ても分からない https://example.com/a?b=1 APNの設定",
            "ここ見ても分からない APNの設定",
        ),
        ("tried www.sorami.jp/help/apn?x=1, still no data", "tried still no data"),
        # hashtags keep their word, lose the mark
        ("#格安SIM #MNP 転入の手順を教えて", "格安SIM MNP 転入の手順を教えて"),
        ("#roaming in Korea, what does it cost?", "roaming in Korea, what does it cost?"),
        # greetings and closings (ja, en, zh, ko)
        ("こんにちは!通話料の上限はありますか?よろしくお願いします", "通話料の上限はありますか?"),
        ("Hello there, can I keep my number? Thanks in advance", "can I keep my number?"),
        ("您好，请问国际漫游怎么开通？谢谢", "请问国际漫游怎么开通?"),
        ("你好 @ソラミモバイル 套餐可以改吗 麻烦你了", "套餐可以改吗"),
        ("안녕하세요. 해외 로밍은 어떻게 신청하나요? 감사합니다", "해외 로밍은 어떻게 신청하나요?"),
        ("안녕하세요 유심 재발급 비용이 얼마예요? 잘 부탁드립니다", "유심 재발급 비용이 얼마예요?"),
        # emoji stay out
        ("機種変更したい🙏✨ (^^;)", "機種変更したい"),
    ],
)
def test_clean_post_removes_what_is_not_the_question(raw: str, clean: str) -> None:
    assert clean_post(raw) == clean


@pytest.mark.parametrize(
    "kept",
    [
        "support@sorami.example に送ったメール",  # an e-mail address is not a mention
        "C#で書いたアプリ",
        "プランは#1がおすすめ?",
    ],
)
def test_what_looks_like_a_mention_or_hashtag_but_is_not_stays(kept: str) -> None:
    out = clean_post(kept)
    for word in ("sorami.example", "C#", "#1"):
        if word in kept:
            assert word in out


def test_a_display_name_glued_to_a_long_text_is_left_rather_than_eating_the_question() -> None:
    text = "@ソラミモバイル公式料金プランの変更は月の途中でもできますか教えてください"
    assert "料金プラン" in strip_mentions(text)


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        (
            "@小林さん ご連絡ありがとうございます。APNを再設定してください。^中野",
            "APNを再設定してください。",
        ),
        (
            "Hi Ken, restart the phone and re-insert the SIM. —Ken",
            "restart the phone and re-insert the SIM.",
        ),
        (
            "@김민수 님 설정에서 모바일 데이터를 켜 주세요. 감사합니다",
            "설정에서 모바일 데이터를 켜 주세요.",
        ),
        ("お問い合わせありがとうございます。詳しくはDMにてお伺いします。", ""),
        ("Please send us a DM with your account number.", ""),
    ],
)
def test_agent_replies_lose_mentions_signatures_and_dm_boilerplate(raw: str, clean: str) -> None:
    assert clean_agent_text(raw) == clean


def test_suggest_and_capture_read_a_post_alike() -> None:
    post = "@サポート こんにちは!#eSIM の再発行はできますか? https://x.com/q よろしくお願いします"
    assert language.clean_post(post) == clean_post(post)
    assert cleaning.clean_post_text(post, "customer") == clean_post(post)
    assert clean_post(post) == "eSIM の再発行はできますか?"


def test_eval_cleans_queries_unless_told_not_to() -> None:
    post = "@SoramiMobile hi! how do I top up data? thanks"
    assert query_text(post) == "how do I top up data?"
    assert query_text(post, clean=False) == post
    # a post that cleaning empties is searched as typed, as suggest does
    assert query_text("@SoramiMobile thanks!") == "@SoramiMobile thanks!"
