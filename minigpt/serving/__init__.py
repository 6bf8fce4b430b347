"""`minigpt serve`: an OpenAI-compatible HTTP server with batched generation and a chat page.

schemas.py (request bodies, validated), bodies.py (reading them within the size limit),
errors.py (OpenAI's error shape), responses.py (answers and stream chunks), templates.py (chat
messages to a prompt, as transformers renders them), batch.py (one KV cache for rows that come
and go), engine.py (the worker thread that batches every request's rows), auth.py (--api_key),
app.py (the FastAPI routes) and index.html (the chat page).
"""
