"""Every cleaning rule, in Japanese and English, on posts as agents and customers write them."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kb.text.cleaning import (
    agent_reply_markdown,
    clean_agent_text,
    clean_customer_text,
    customer_question,
    normalize_width,
    pseudonymize,
    split_sentences,
    strip_emoji,
)


# -- width and whitespace ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("ＳＩＭカードが認識されません！", "SIMカードが認識されません!"),
        ("ｿﾗﾐﾓﾊﾞｲﾙのｱﾌﾟﾘにﾛｸﾞｲﾝできない", "ソラミモバイルのアプリにログインできない"),
        ("５Ｇ　が　表示されない", "5G が 表示されない"),
        ("My　Ｓｏｒａｍｉ  password", "My Sorami password"),
    ],
)
def test_full_and_half_width_are_normalised(raw: str, clean: str) -> None:
    assert normalize_width(raw) == clean


def test_normalising_keeps_line_breaks_and_list_numbers() -> None:
    assert normalize_width("①設定を開く\r\n\r\n\r\n②APNを選ぶ") == "(1) 設定を開く\n\n(2) APNを選ぶ"


# -- social markup ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("@SoramiMobile eSIMの再発行はできますか？", "eSIMの再発行はできますか?"),
        ("＠SoramiMobile ＠sorami_help 機種変更したい", "機種変更したい"),
        ("@SoramiSupport @jane.doe how do I top up data?", "how do I top up data?"),
        ("返信先: @SoramiMobile 料金プランを変えたい", "料金プランを変えたい"),
        ("Replying to @SoramiMobile and @x how do I port my number?", "how do I port my number?"),
    ],
)
def test_mentions_are_removed(raw: str, clean: str) -> None:
    assert clean_customer_text(raw) == clean


def test_mention_with_honorific_goes_but_email_addresses_stay() -> None:
    assert clean_agent_text("@taro_123 さん、メールは noreply@soramimobile.jp から届きます。") == (
        "メールは noreply@soramimobile.jp から届きます。"
    )
    assert "name@example.com" in clean_customer_text("I changed my email to name@example.com")


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        (
            "料金はこちら https://soramimobile.jp/plans?x=1 で確認できますか",
            "料金はこちらで確認できますか",
        ),
        ("see www.soramimobile.jp/help for roaming fees?", "see for roaming fees?"),
        ("My bill looks wrong https://t.co/AbC123", "My bill looks wrong"),
    ],
)
def test_urls_are_removed_from_the_matching_text(raw: str, clean: str) -> None:
    assert clean_customer_text(raw) == clean


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        (
            "#機種変更 したらeSIMが使えない #ソラミモバイル",
            "機種変更したらeSIMが使えないソラミモバイル",
        ),
        ("＃通信障害 ですか？", "通信障害ですか?"),
        ("#eSIM transfer to a new #iPhone?", "eSIM transfer to a new iPhone?"),
        ("we're #1 and C# devs", "we're #1 and C# devs"),
    ],
)
def test_hashtags_lose_their_mark_and_keep_their_word(raw: str, clean: str) -> None:
    assert clean_customer_text(raw) == clean


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("電波が入らない😭😭", "電波が入らない"),
        ("家族割に入りたい👨‍👩‍👧‍👦✨", "家族割に入りたい"),
        ("海外で使える？🇯🇵➡️🇺🇸", "海外で使える?"),
        ("no signal since this morning 👋🏽🙏", "no signal since this morning"),
        ("5Gが表示されません(´・ω・`)", "5Gが表示されません"),
        ("請求が高い気がする（＾＾；）", "請求が高い気がする"),
        ("また止まった(笑)ｗｗｗ", "また止まった"),
        ("data is slow again :( lol", "data is slow again lol"),
    ],
)
def test_emoji_kaomoji_and_laughs_are_removed(raw: str, clean: str) -> None:
    assert clean_customer_text(raw) == clean


def test_brackets_that_are_words_are_not_taken_for_faces() -> None:
    assert strip_emoji("月額990円(税込)です (iPhone 15)") == "月額990円(税込)です (iPhone 15)"


# -- agent openings ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "raw",
    [
        "こんにちは！〇〇サポートの中野です。ツイート拝見しました。",
        "お問い合わせいただきありがとうございます。",
        "いつもソラミモバイルをご利用いただき誠にありがとうございます。",
        "ソラミモバイル公式サポートです。",
        "サポート担当の佐藤と申します。",
        "こんばんは、カスタマーサポートの山田がお答えします！",
        "ご不便をおかけして申し訳ございません。",
        "大変お待たせいたしました。",
        "田中様、こんにちは。かしこまりました。",
    ],
)
def test_japanese_agent_greetings_and_introductions_are_removed(raw: str) -> None:
    content = "eSIMの再発行はMy Soramiから行えます。"
    assert clean_agent_text(raw + content) == content


@pytest.mark.parametrize(
    "raw",
    [
        "Hi there, Sam from the support team here.",
        "Hi there, Sam from the support team here",
        "Hello Jane, I'm Alex with Sorami Mobile Support.",
        "Hey! This is the Sorami care team here.",
        "Hi! Thanks for reaching out.",
        "Good morning, sorry to hear about the trouble!",
        "Thank you for your patience. I'd be happy to help with that.",
        "Sam here!",
    ],
)
def test_english_agent_greetings_and_introductions_are_removed(raw: str) -> None:
    content = "You can reset your password from the login screen."
    assert clean_agent_text(f"{raw} {content}") == content


def test_an_answer_that_merely_starts_like_an_introduction_is_kept() -> None:
    for text in (
        "担当部署に確認したところ、SIMの再発行は可能です。",
        "Settings here: go to Mobile Data and turn on roaming.",
        "I'm afraid roaming is not included in the Mini plan.",
    ):
        assert clean_agent_text(text) == text


# -- agent closings and signatures ------------------------------------------------------
@pytest.mark.parametrize(
    "raw",
    [
        "よろしくお願いいたします。^中野",
        "引き続きソラミモバイルをよろしくお願いいたします。",
        "ご不明な点がございましたらお気軽にお問い合わせください。",
        "今後ともよろしくお願い申し上げます。（担当：中野）",
        "失礼いたします。／中野",
        "ご連絡ありがとうございました！ ^NK",
        "素敵な一日をお過ごしください。",
    ],
)
def test_japanese_sign_offs_and_signatures_are_removed(raw: str) -> None:
    content = "設定アプリからAPNを確認してください。"
    assert clean_agent_text(content + raw) == content


@pytest.mark.parametrize(
    "raw",
    [
        "Hope this helps! ^Sam",
        "Have a great day! - Sam",
        "Let us know if you need anything else.",
        "Feel free to reach out if you have any other questions. Cheers!",
        "Thanks,\nAlex",
        "Best regards,\n--\nSam Lee\nSorami Mobile Support\n0120-000-000",
        "Sent from my iPhone",
    ],
)
def test_english_sign_offs_and_signatures_are_removed(raw: str) -> None:
    content = "Turn on Data Roaming under Settings > Mobile Data."
    assert clean_agent_text(f"{content}\n{raw}") == content


# -- DM hand-off ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        (
            "詳しくはDMにてお伺いします。機種変更の手順はこちらです。",
            "機種変更の手順はこちらです。",
        ),
        ("お手数ですがＤＭにてご契約者名をお知らせください。", ""),
        ("ダイレクトメッセージをお送りしましたのでご確認ください。", ""),
        ("Please send us a DM with your account number. We'll take a look.", "We'll take a look."),
        ("We've sent you a DM! Roaming is free in the EU.", "Roaming is free in the EU."),
        ("Can you DM us your order number so we can check?", ""),
    ],
)
def test_agents_dm_hand_off_boilerplate_is_removed(raw: str, clean: str) -> None:
    assert clean_agent_text(raw) == clean


def test_customers_dm_notes_go_but_questions_about_messages_stay() -> None:
    assert clean_customer_text("DMしました！") == ""
    assert clean_customer_text("I sent you a DM") == ""
    kept = "How do I back up my private messages?"
    assert clean_customer_text(kept) == kept
    assert clean_customer_text("I'm an admirer of ascii art, any apps?") != ""


# -- customers' greetings and closings --------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("@SoramiMobile こんにちは！eSIMの再発行ってどうやるんですか？よろしくお願いします🙏",
         "eSIMの再発行ってどうやるんですか?"),
        ("ソラミモバイルさん、すみません、5Gが表示されません。返信お待ちしています。",
         "5Gが表示されません。"),
        ("Hi, how do I change my plan? Thanks in advance", "how do I change my plan?"),
        ("Hello @SoramiMobile! Quick question: can I keep my number? Any help appreciated :)",
         "can I keep my number?"),
    ],
)  # fmt: skip
def test_customer_greetings_and_closings_are_removed(raw: str, clean: str) -> None:
    assert clean_customer_text(raw) == clean


# -- whole threads ----------------------------------------------------------------------
def test_the_question_is_what_the_customer_wrote_before_the_first_reply() -> None:
    posts = [
        ("customer", "eSIMの再発行をしたいです。"),
        ("customer", "iPhone 17に機種変更しました。"),
        ("agent", "My Soramiから再発行できます。"),
        ("customer", "できました!"),
    ]
    assert customer_question(posts) == "eSIMの再発行をしたいです。iPhone 17に機種変更しました。"
    assert customer_question([("agent", "何かお困りですか"), ("customer", "APNの設定")]) == (
        "APNの設定"
    )
    assert customer_question([("customer", ""), ("agent", "hi")]) == ""
    assert len(customer_question([("customer", "あ。" * 400)])) <= 500


def test_agent_reply_becomes_markdown_with_links_and_lists() -> None:
    md = agent_reply_markdown(
        [
            "こんにちは！サポートの中野です。手順は次のとおりです。①設定を開く②「モバイル通信」を"
            "タップ③APNを選択 詳しくは https://soramimobile.jp/apn をご覧ください。^中野",
            "Hi there, Sam here! *Important*: restart after [step 3].",
        ]
    )
    assert md.splitlines()[:4] == [
        "手順は次のとおりです。",
        "",
        "1. 設定を開く",
        "2. 「モバイル通信」をタップ",
    ]
    assert "<https://soramimobile.jp/apn>" in md
    assert "\\*Important\\*: restart after \\[step 3\\]." in md
    assert "中野" not in md and "Sam" not in md


# -- pseudonyms -------------------------------------------------------------------------
def test_handles_are_pseudonymised_with_a_keyed_hash() -> None:
    a = pseudonymize("@Taro_Yamada", "secret-1")
    assert re.fullmatch(r"[0-9a-f]{64}", a)
    assert (
        a
        == pseudonymize("taro_yamada", "secret-1")
        == pseudonymize("＠Ｔａｒｏ_Yamada", "secret-1")
    )
    assert a != pseudonymize("@Taro_Yamada", "secret-2")
    assert a != pseudonymize("@Hanako", "secret-1")
    assert "taro" not in a.lower()
    assert pseudonymize("  ", "secret-1") == ""


# -- properties -------------------------------------------------------------------------
_POST = st.lists(
    st.one_of(
        st.text(max_size=20),
        st.sampled_from(
            ["@SoramiMobile", "https://t.co/x1", "#機種変更", "😭", "👍🏻", "こんにちは！",
             "よろしくお願いします", "DMしました", "eSIM", "。", "?", "\n", " ", "ｿﾗﾐ", "^中野"]
        ),
    ),
    max_size=12,
).map(" ".join)  # fmt: skip


@given(_POST)
def test_cleaned_text_never_keeps_links_mentions_emoji_or_line_breaks(raw: str) -> None:
    for role in ("customer", "agent"):
        clean = clean_customer_text(raw) if role == "customer" else clean_agent_text(raw)
        assert "http" not in clean.lower() or "http" in raw.lower().replace("https://t.co/x1", "")
        assert "@SoramiMobile" not in clean
        assert not any(0x1F300 <= ord(ch) <= 0x1FAFF for ch in clean)
        assert "\n" not in clean and clean == clean.strip()


@given(st.text(max_size=200))
def test_sentence_splitting_loses_nothing(line: str) -> None:
    line = line.replace("\n", " ")
    assert "".join(split_sentences(line)) == line
