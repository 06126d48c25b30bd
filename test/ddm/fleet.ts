/** Fleet repositories with declarations, for the DDM tests. */
export const passcodeDecl = (name = 'passcode', minLength = 8, extra = '') => `apiVersion: orchard/v1
kind: Declaration
metadata: {name: ${name}}
spec:
  Type: com.apple.configuration.passcode.settings
  Identifier: com.example.${name}
  Payload:
    MinimumLength: ${minLength}
    RequireAlphanumericPasscode: true
${extra}`;

export const ddmBlueprint = (name: string, declarations: string[], extra = '') => `apiVersion: orchard/v1
kind: Blueprint
metadata: {name: ${name}}
spec:
  selector: {platforms: [macOS]}
  declarations: [${declarations.join(', ')}]
${extra}`;
