"""Operations on the whole knowledge base: backups and content export."""
