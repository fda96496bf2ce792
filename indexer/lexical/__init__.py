"""Lexical retrieval: the analyser (Sudachi, stemmed English) and BM25."""
