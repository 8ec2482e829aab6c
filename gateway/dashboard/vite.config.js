import { defineConfig } from 'vite';

// Built by compose/local/setup.sh into the gateway's web root (ignored), which UseStaticFiles serves:
// every script and style is bundled here, nothing is fetched at run time.
export default defineConfig({
  base: '/',
  build: { outDir: '../wwwroot', emptyOutDir: true, chunkSizeWarningLimit: 400 },
});
