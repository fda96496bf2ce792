"""Text of posts and articles: cleaning, personal data, language and scripts."""
