"""Translations between wire formats, pure and tested without a network:

- `chat_to_messages`: an OpenAI chat request to Anthropic Messages, and the reply (and stream) back;
- `messages_to_chat`: an Anthropic Messages request to OpenAI chat, and the reply (and stream) back.

The dialects (gateway/proxy/dialects) and the adapters (gateway/proxy/adapters) call them; they
call nothing of either.
"""
