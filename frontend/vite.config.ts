/// <reference types="vitest/config" />
import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

// The backend serves the built UI from src/gpufl/backend/static at "/".
// In development, `npm run dev` proxies /api to a running gpufl-backend (GPUFL_BACKEND, default :8080).
export default defineConfig({
  base: '/',
  plugins: [react()],
  build: {
    outDir: '../src/gpufl/backend/static',
    emptyOutDir: true,
    chunkSizeWarningLimit: 1000,
  },
  server: {
    proxy: {
      '/api': { target: process.env.GPUFL_BACKEND ?? 'http://127.0.0.1:8080', changeOrigin: true },
    },
  },
  test: {
    environment: 'jsdom',
    include: ['src/**/*.test.{ts,tsx}'],
  },
});
