// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Pausable} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Pausable.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {Initializable} from "@openzeppelin/contracts/proxy/utils/Initializable.sol";
import {Nonces} from "@openzeppelin/contracts/utils/Nonces.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {SignedOperations} from "./SignedOperations.sol";

/// @title A tenant's credit (points) token: ERC-20 + EIP-2612 permit, roles, pausable,
/// minted, transferred and burned through signed operations.
/// @dev Deployed once as an implementation and used through EIP-1167 clones, so state that a
/// constructor would set lives in storage written by `initialize`. The EIP-712 domain (permits and
/// signed operations alike) is named after the token's `name()`, as EIP-2612 integrations expect.
contract CreditToken is ERC20Pausable, IERC20Permit, Nonces, SignedOperations, Initializable {
    /// @dev One token movement. `from == 0` mints (signer holds MINTER_ROLE); otherwise the signer
    /// is the holder `from`, and `to == 0` burns.
    struct Operation {
        address from;
        address to;
        uint256 amount;
        bytes32 ref;
    }

    /// @dev Operations authorised together by one signature.
    struct SignedGroup {
        address signer;
        Operation[] ops;
        uint256 deadline;
        bytes signature;
    }

    bytes32 public constant OPERATION_TYPEHASH =
        keccak256("Operation(address from,address to,uint256 amount,bytes32 ref)");
    bytes32 public constant OPERATIONS_TYPEHASH = keccak256(
        "Operations(address signer,Operation[] ops,uint256 deadline)Operation(address from,address to,uint256 amount,bytes32 ref)"
    );
    bytes32 private constant _PERMIT_TYPEHASH =
        keccak256("Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)");
    /// @notice The cap of a credit with no `maxSupply` (and the largest cap there is): supplies stay far
    /// from 2^256, so sums of balances and supplies cannot overflow in integrations.
    uint256 public constant UNLIMITED_SUPPLY = type(uint248).max;

    string private _tokenName;
    string private _tokenSymbol;
    uint8 private _decimals;
    uint248 private _maxSupply; // 0: unlimited

    error ERC2612ExpiredSignature(uint256 deadline);
    error ERC2612InvalidSigner(address signer, address owner);

    constructor(address exchangeRouter) ERC20("", "") SignedOperations(exchangeRouter) {}

    function initialize(
        string calldata name_,
        string calldata symbol_,
        uint8 decimals_,
        uint248 maxSupply_,
        address admin,
        address[] calldata minters
    ) external initializer {
        _tokenName = name_;
        _tokenSymbol = symbol_;
        (_decimals, _maxSupply) = (decimals_, maxSupply_);
        if (admin != address(0)) {
            _grantRole(DEFAULT_ADMIN_ROLE, admin);
            _grantRole(PAUSER_ROLE, admin);
        }
        for (uint256 i; i < minters.length; ++i) {
            _grantRole(MINTER_ROLE, minters[i]);
        }
        emit EIP712DomainChanged();
    }

    function name() public view override returns (string memory) {
        return _tokenName;
    }

    function symbol() public view override returns (string memory) {
        return _tokenSymbol;
    }

    function decimals() public view override returns (uint8) {
        return _decimals;
    }

    /// @notice The supply cap; 0 means unlimited (`UNLIMITED_SUPPLY`).
    function maxSupply() external view returns (uint256) {
        return _maxSupply;
    }

    /// @inheritdoc IERC20Permit
    function permit(address owner, address spender, uint256 value, uint256 deadline, uint8 v, bytes32 r, bytes32 s)
        external
    {
        if (block.timestamp > deadline) revert ERC2612ExpiredSignature(deadline);
        bytes32 structHash = keccak256(abi.encode(_PERMIT_TYPEHASH, owner, spender, value, _useNonce(owner), deadline));
        address signer = ECDSA.recover(_hashTypedData(structHash), v, r, s);
        if (signer != owner) revert ERC2612InvalidSigner(signer, owner);
        _approve(owner, spender, value);
    }

    /// @inheritdoc IERC20Permit
    function nonces(address owner) public view override(IERC20Permit, Nonces) returns (uint256) {
        return super.nonces(owner);
    }

    /// @inheritdoc IERC20Permit
    function DOMAIN_SEPARATOR() public view override(IERC20Permit, SignedOperations) returns (bytes32) {
        return super.DOMAIN_SEPARATOR();
    }

    /// @notice Executes signed groups of operations; an invalid operation is reported by
    /// `OperationFailed` and skipped, the others go through. Only the platform's relayers may call it.
    function execute(SignedGroup[] calldata groups) external whenNotPaused nonReentrant onlyRelayer {
        bytes32 separator = DOMAIN_SEPARATOR();
        for (uint256 g; g < groups.length; ++g) {
            SignedGroup calldata group = groups[g];
            bytes32 structHash = hashOperations(group.signer, group.ops, group.deadline);
            Failure auth = _authorise(separator, group.signer, structHash, group.deadline, group.signature);
            for (uint256 i; i < group.ops.length; ++i) {
                Operation calldata op = group.ops[i];
                Failure failure =
                    auth == Failure.None ? _executeOperation(group.signer, op.from, op.to, 0, op.amount, op.ref) : auth;
                _settle(op.ref, group.signer, failure);
            }
        }
    }

    /// @notice EIP-712 struct hash of `Operations(signer, ops, deadline)`.
    function hashOperations(address signer, Operation[] calldata ops, uint256 deadline) public pure returns (bytes32) {
        bytes32[] memory hashes = new bytes32[](ops.length);
        for (uint256 i; i < ops.length; ++i) {
            hashes[i] = keccak256(abi.encode(OPERATION_TYPEHASH, ops[i]));
        }
        return keccak256(abi.encode(OPERATIONS_TYPEHASH, signer, _hashArray(hashes), deadline));
    }

    /// @dev `id` is 0 for a credit (an exchange leg naming another id is `Invalid`).
    function _executeOperation(address signer, address from, address to, uint256 id, uint256 amount, bytes32 ref)
        internal
        override
        returns (Failure)
    {
        if (from == address(0) ? !hasRole(MINTER_ROLE, signer) : from != signer) return Failure.Unauthorized;
        if (!_consumeRef(signer, ref)) return Failure.RefUsed;
        if (amount == 0 || from == to || id != 0) return Failure.Invalid;
        if (from == address(0)) {
            uint256 cap = _maxSupply == 0 ? UNLIMITED_SUPPLY : _maxSupply;
            if (amount > cap - totalSupply()) return Failure.CapExceeded;
        } else if (balanceOf(from) < amount) {
            return Failure.InsufficientBalance;
        }
        _update(from, to, amount);
        return Failure.None;
    }

    function _domainName() internal view override returns (string memory) {
        return _tokenName;
    }

}
