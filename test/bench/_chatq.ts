import { api, IDENTITY_VARS, login, SUPERADMIN_EMAIL } from "../helpers/auth";
import { startTestStack } from "../helpers/stack";
const stack = await startTestStack({ workerVars: { ...IDENTITY_VARS }, env: { SINAS_FAKE_LLM: "true", FAKE_LLM_PORT: "0" } });
try {
  const session = await login(stack, SUPERADMIN_EMAIL);
  const provider = await api(stack, session, "POST", "/api/v1/llm-providers", { name: "bench-fake", provider_type: "openai", api_key: "sk-bench", api_endpoint: `${stack.fakeLlmUrl}/v1`, default_model: "fake-model", is_default: true });
  await api(stack, session, "POST", "/api/v1/agents", { namespace: "default", name: "bench", llm_provider_id: (provider.body as { id: string }).id, model: "fake-model", system_prompt: "You are a benchmark." });
  const chat = await api(stack, session, "POST", "/agents/default/bench/chats", { title: "x" });
  const chatId = (chat.body as { id: string }).id;
  const turn = async (i: number) => {
    const r = await stack.fetch(`/chats/${chatId}/messages/stream`, { method: "POST", headers: session.headers, body: JSON.stringify({ content: `hi ${i}` }) });
    await r.text();
  };
  for (let i = 0; i < 3; i++) await turn(i);
  await new Promise((r) => setTimeout(r, 1000));
  console.log("MARK-START", new Date().toISOString());
  await turn(99);
  await new Promise((r) => setTimeout(r, 1500));
  console.log("MARK-END", new Date().toISOString());
} finally { await stack.stop(); }
