"""Text of posts and articles (cleaning, personal data, language) and of import files.

The Unicode script classes all of them use live in indexer.lexical.scripts, shared with the
analyser.
"""
