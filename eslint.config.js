// ESLint flat config: the recommended sets (not the type-checked ones, to keep lint fast) over
// src, bench, test and scripts. Every rule turned off or relaxed here says why on its line.
import js from '@eslint/js';
import { defineConfig } from 'eslint/config';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default defineConfig({ ignores: ['dist/**', 'node_modules/**', 'data/**', 'coverage/**'] }, js.configs.recommended, tseslint.configs.recommended, {
  languageOptions: {
    ecmaVersion: 2022,
    sourceType: 'module',
    globals: { ...globals.node },
  },
  rules: {
    // Git ref names, XML 1.0 text and LevelDB keys are checked for control characters on purpose.
    'no-control-regex': 'off',
    // `const { secret: _s, ...rest } = x` drops a key on purpose; a leading _ marks a deliberately unused name.
    '@typescript-eslint/no-unused-vars': [
      'error',
      { ignoreRestSiblings: true, argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrorsIgnorePattern: '^_' },
    ],
  },
});
