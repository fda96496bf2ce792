"""The lexical analyser: Sudachi normalised forms for Japanese, stems for English."""

from __future__ import annotations

from indexer.lexical.tokenizer import Tokenizer
from kb.text.language import dedup_key, detect_language, normalize_text

tok = Tokenizer()


def test_japanese_is_segmented_into_words_not_clauses() -> None:
    terms = tok.tokenize("機種変更したらeSIMが使えなくなりました")
    assert "esim" in terms
    assert "機種" in terms and "変更" in terms
    assert "が" not in terms  # particles carry no topic


def test_japanese_spelling_variants_share_a_term() -> None:
    # Sudachi's normalised form folds okurigana variants: 引越し / 引っ越し.
    assert set(tok.tokenize("引越し")) & set(tok.tokenize("引っ越し"))


def test_full_width_and_case_are_folded() -> None:
    assert tok.tokenize("ＳＩＭカード") == tok.tokenize("simカード")
    assert tok.tokenize("Resetting PASSWORDS") == tok.tokenize("reset password")


def test_english_stopwords_and_stems() -> None:
    assert tok.tokenize("How do I activate the eSIM?") == ["activ", "esim"]


def test_language_detection() -> None:
    assert detect_language("eSIMが使えない") == "ja"
    assert detect_language("料金") == "ja"
    assert detect_language("my esim wont work 😭 @sorami") == "en"
    assert detect_language("🙏🙏") == "en"


def test_normalisation_and_dedup_key() -> None:
    assert normalize_text("  ｅＳＩＭ　の  設定 ") == "eSIM の 設定"
    assert dedup_key("How do I reset my password?") == dedup_key("how do i reset my password")
    assert dedup_key("ﾊﾟｽﾜｰﾄﾞ") == dedup_key("パスワード")
