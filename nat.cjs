const Client = require('pg').native.Client;
(async () => {
  const c = new Client({ connectionString: 'postgres://postgres@127.0.0.1:5432/postgres' });
  c.on('error', (e) => console.log('client error event', e.message, e.code));
  await c.connect();
  await c.query("SET idle_in_transaction_session_timeout = '200ms'");
  await c.query('BEGIN');
  await new Promise((r) => setTimeout(r, 1000));
  try { await c.query('SELECT 1'); } catch (e) { console.log('query error', JSON.stringify(e.message), e.code, e.sqlState, Object.keys(e)); }
  try { await c.query('SELECT 1'); } catch (e) { console.log('query error2', JSON.stringify(e.message), e.code, Object.keys(e)); }
})();
